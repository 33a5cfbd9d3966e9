#include "tools/seg_args.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "tools/cli.h"

void ms_seg_usage(const char *cmd)
{
    if (!strcmp(cmd, "encode")) {
        printf("usage: medsam encode -w W.msw -i IMAGE [--raw] [-t N] [-v] -o EMB.npy\n"
               "  --backend auto|cpu|cuda  where the image encoder runs (medsam backends;\n"
               "                           default auto: CUDA when usable); --tf32 TF32 GEMMs\n");
        return;
    }
    printf("usage: medsam segment -w W.msw -i IMAGE [prompts] -o OUT [outputs] [options]\n"
           "prompts (coordinates in the image's pixels; x right, y down):\n"
           "  --box x0,y0,x1,y1        one prompt of a batch (repeat: box k -> label k)\n"
           "  --point x,y[,label]      a point of the prompt (label 1 fg, 0 bg; default 1)\n"
           "  --mask-input F.npy       (256,256) logits from an earlier --save-logits\n"
           "  --multimask              the model's 3 candidates; the best by IoU is written\n"
           "  --box3d x0,y0,z0,x1,y1,z1  a volume box in voxel indices (3-D input)\n"
           "  --npz IN.npz             challenge format: imgs + boxes in, segs out (-o OUT.npz)\n"
           "outputs:\n"
           "  -o OUT                   .png (0/255, label map for several boxes), .npy,\n"
           "                           .nii/.nii.gz (3-D: input geometry kept)\n"
           "  --overlay OUT.png        the image with the mask tinted and the boxes drawn\n"
           "  --save-logits F.npy      low-res logits (B,C,256,256)\n"
           "  --save-iou F.npy         predicted IoU (B,C)\n"
           "  --save-embedding F.npy   image embedding (1,256,64,64)\n"
           "options:\n"
           "  --embedding F.npy        reuse a saved embedding, skip the encoder\n"
           "  --raw                    IMAGE is a (1024,1024,3) uint8 .npy fed as image/255,\n"
           "                           prompts in that frame\n"
           "  --preprocess medsam|sam  override the weight file's convention\n"
           "  --window L,W|abdomen|lung|brain|bone   CT window; --mr  MR percentiles\n"
           "  --series UID  --volume K DICOM series / 4-D NIfTI volume to read\n"
           "  -t N                     threads (default: all CPUs)\n"
           "  --backend auto|cpu|cuda  where the image encoder runs (medsam backends;\n"
           "                           default auto: CUDA when usable; the decoder: CPU)\n"
           "  --tf32                   TF32 tensor-core GEMMs on CUDA (faster, ~3 digits)\n"
           "  -v                       stage timings on stderr\n");
}

/* Parses exactly n comma-separated numbers. */
static int parse_nums(const char *s, double *v, int n_min, int n_max, int *n_out)
{
    int n = 0;
    const char *p = s;
    while (*p && n < n_max) {
        char *end;
        errno = 0;
        v[n] = strtod(p, &end);
        if (end == p || errno || !isfinite(v[n])) return 0;
        n++;
        if (*end == 0) {
            p = end;
            break;
        }
        if (*end != ',') return 0;
        p = end + 1;
    }
    *n_out = n;
    return *p == 0 && n >= n_min && n <= n_max;
}

static int add_box(const char *cmd, ms_seg_args *a, const char *s)
{
    double v[4];
    int n;
    if (!parse_nums(s, v, 4, 4, &n))
        return ms_cli_error(cmd, "--box '%s': expected x0,y0,x1,y1", s);
    if (v[2] < v[0] || v[3] < v[1])
        return ms_cli_error(cmd, "--box '%s': x1 < x0 or y1 < y0", s);
    if (a->n_boxes == MS_SEG_MAX_PROMPTS)
        return ms_cli_error(cmd, "at most %d boxes", MS_SEG_MAX_PROMPTS);
    a->boxes[a->n_boxes++] = (ms_box){v[0], v[1], v[2], v[3]};
    return 0;
}

static int add_point(const char *cmd, ms_seg_args *a, const char *s)
{
    double v[3] = {0, 0, 1};
    int n;
    if (!parse_nums(s, v, 2, 3, &n) || (v[2] != 0 && v[2] != 1))
        return ms_cli_error(cmd, "--point '%s': expected x,y or x,y,label (label 0 or 1)", s);
    if (a->n_points == MS_SEG_MAX_PROMPTS)
        return ms_cli_error(cmd, "at most %d points", MS_SEG_MAX_PROMPTS);
    a->points[a->n_points++] = (ms_point){v[0], v[1], (int)v[2]};
    return 0;
}

static int add_box3d(const char *cmd, ms_seg_args *a, const char *s)
{
    int n;
    double *v = a->boxes3d[a->n_boxes3d];
    if (a->n_boxes3d == MS_SEG_MAX_PROMPTS)
        return ms_cli_error(cmd, "at most %d boxes", MS_SEG_MAX_PROMPTS);
    if (!parse_nums(s, v, 6, 6, &n))
        return ms_cli_error(cmd, "--box3d '%s': expected x0,y0,z0,x1,y1,z1", s);
    if (v[3] < v[0] || v[4] < v[1] || v[5] < v[2])
        return ms_cli_error(cmd, "--box3d '%s': a max corner is below its min corner", s);
    a->n_boxes3d++;
    return 0;
}

static int parse_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == 0 || *end || errno || v < lo)
        return ms_cli_error(cmd, "%s '%s': expected an integer >= %lld", opt, s, (long long)lo);
    *out = v;
    return 0;
}

/* Options that take a value, and where it goes. */
static const char **string_opt(ms_seg_args *a, const char *o)
{
    static const struct {
        const char *name;
        size_t off;
    } k[] = {
        {"-w", offsetof(ms_seg_args, weights)},         {"--weights", offsetof(ms_seg_args, weights)},
        {"-i", offsetof(ms_seg_args, image)},           {"--image", offsetof(ms_seg_args, image)},
        {"-o", offsetof(ms_seg_args, output)},          {"--output", offsetof(ms_seg_args, output)},
        {"--overlay", offsetof(ms_seg_args, overlay)},  {"--mask-input", offsetof(ms_seg_args, mask_input)},
        {"--save-logits", offsetof(ms_seg_args, save_logits)},
        {"--save-iou", offsetof(ms_seg_args, save_iou)},
        {"--save-embedding", offsetof(ms_seg_args, save_embedding)},
        {"--embedding", offsetof(ms_seg_args, embedding)},
        {"--npz", offsetof(ms_seg_args, npz)},          {"--preprocess", offsetof(ms_seg_args, preprocess)},
        {"--series", offsetof(ms_seg_args, series)},    {"--backend", offsetof(ms_seg_args, backend)},
        {"--window", offsetof(ms_seg_args, window)},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(o, k[i].name)) return (const char **)((char *)a + k[i].off);
    return NULL;
}

static int parse_value_opt(const char *cmd, ms_seg_args *a, const char *o, const char *v)
{
    const char **slot = string_opt(a, o);
    if (slot) {
        *slot = v;
        return 0;
    }
    if (!strcmp(o, "--box")) return add_box(cmd, a, v);
    if (!strcmp(o, "--point")) return add_point(cmd, a, v);
    if (!strcmp(o, "--box3d")) return add_box3d(cmd, a, v);
    if (!strcmp(o, "--volume")) return parse_int(cmd, o, v, 0, &a->volume);
    if (!strcmp(o, "-t") || !strcmp(o, "--threads")) {
        int64_t t;
        if (parse_int(cmd, o, v, 1, &t)) return 1;
        a->threads = (int)(t > 1024 ? 1024 : t);
        return 0;
    }
    return -1;
}

static int *flag_opt(ms_seg_args *a, const char *o)
{
    if (!strcmp(o, "--multimask")) return &a->multimask;
    if (!strcmp(o, "--raw")) return &a->raw;
    if (!strcmp(o, "--mr")) return &a->mr;
    if (!strcmp(o, "--tf32")) return &a->tf32;
    if (!strcmp(o, "-v") || !strcmp(o, "--verbose")) return &a->verbose;
    return NULL;
}

/* --backend: ms_seg_load_model applies it; an explicit cuda that cannot
 * work fails here, before anything is read. */
static int check_backend(const char *cmd, const ms_seg_args *a)
{
    if (!a->backend) return 0;
    if (!ms_backend_choice_valid(a->backend))
        return ms_cli_error(cmd, "--backend '%s': expected auto, cpu or cuda", a->backend);
    ms_backend *be;
    if (!strcmp(a->backend, "cuda") && ms_backend_select("cuda", &be))
        return ms_cli_error(cmd, "%s", ms_last_error());
    return 0;
}

int ms_seg_parse(const char *cmd, int argc, char **argv, ms_seg_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            ms_seg_usage(cmd);
            return 2;
        }
        int *flag = flag_opt(a, o);
        if (flag) {
            *flag = 1;
            continue;
        }
        if (i + 1 >= argc) {
            if (string_opt(a, o) || parse_value_opt(cmd, a, o, "") != -1)
                return ms_cli_error(cmd, "%s needs a value", o);
            return ms_cli_error(cmd, "unknown option '%s' (--help lists them)", o);
        }
        int r = parse_value_opt(cmd, a, o, argv[i + 1]);
        if (r == -1) return ms_cli_error(cmd, "unknown option '%s' (--help lists them)", o);
        if (r) return 1;
        i++;
    }
    if (!a->weights) return ms_cli_error(cmd, "missing -w WEIGHTS.msw");
    if (!a->image && !a->npz) return ms_cli_error(cmd, "missing -i IMAGE");
    if (!a->output) return ms_cli_error(cmd, "missing -o OUTPUT");
    return check_backend(cmd, a);
}
