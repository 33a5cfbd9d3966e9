/* bench_gpu: the image encoder and the mask decoder on the CUDA backend
 * (model/encoder_device.c, model/decoder_device.c).
 *
 *   build/bench/bench_gpu [-r REPEAT] [--tf32] [--json] WEIGHTS.msw
 *
 * Times the first image (weights uploaded, activations planned) and the
 * best of REPEAT later ones on a random image, each until its embedding is
 * back on the host, and reports the bytes the encoder holds on the device;
 * then the prompt encoder + mask decoder for one box and for three, best of
 * 10 * REPEAT, each until the masks are back on the host.
 * Without a usable CUDA backend it says why and exits 0 ("usable": false
 * in JSON), so that a benchmark run goes on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/boxes.h"
#include "core/backend.h"
#include "core/error.h"
#include "model/sam.h"
#include "weights/msw.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

typedef struct gpu_results {
    double first_ms, best_ms, dec_ms[2];
    uint64_t device_bytes;
} gpu_results;

/* One box and three, alternating, as bench_model times the CPU decoder;
 * the first round warms up (the decoder's weights are uploaded). */
static ms_status bench_decoder(ms_sam *m, ms_backend *be, const float *emb, int repeat,
                               double ms[2])
{
    const ms_sam_hparams *h = ms_sam_params(m);
    int64_t px = 16 * h->grid * h->grid;
    ms_prompt p[3];
    bench_box_prompts(p);
    float *logits = malloc(sizeof(float) * (size_t)(3 * px)), iou[3];
    if (!logits) return ms_fail(MS_ERR_NOMEM, "bench_gpu: out of memory");
    ms_status st = MS_OK;
    ms[0] = ms[1] = 1e30;
    for (int r = 0; r <= 10 * repeat && st == MS_OK; r++)
        for (int b = 0; b < 2 && st == MS_OK; b++) {
            double t = now_ms();
            st = ms_sam_decode_on(m, be, emb, p, b ? 3 : 1, 0, logits, iou, NULL, NULL);
            t = now_ms() - t;
            if (r > 0 && t < ms[b]) ms[b] = t;
        }
    free(logits);
    return st;
}

static ms_status bench(const char *path, ms_backend *be, int repeat, gpu_results *r)
{
    ms_weights *w;
    ms_sam *m = NULL;
    MS_TRY(ms_weights_open(path, 0, &w));
    ms_status st = ms_sam_create(w, 0, &m);
    const ms_sam_hparams *h = st == MS_OK ? ms_sam_params(m) : NULL;
    int64_t s = h ? h->img_size : 0, n = h ? h->out_chans * h->grid * h->grid : 0;
    float *image = malloc(sizeof(float) * (size_t)(3 * s * s));
    float *emb = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (st == MS_OK && (!image || !emb)) st = ms_fail(MS_ERR_NOMEM, "bench_gpu: out of memory");
    srand(1);
    for (int64_t i = 0; st == MS_OK && i < 3 * s * s; i++) image[i] = (float)rand() / RAND_MAX;
    double t = now_ms();
    if (st == MS_OK) st = ms_sam_encode_on(m, be, image, emb);
    r->first_ms = now_ms() - t;
    r->best_ms = 1e30;
    for (int i = 0; i < repeat && st == MS_OK; i++) {
        t = now_ms();
        st = ms_sam_encode_on(m, be, image, emb);
        if (now_ms() - t < r->best_ms) r->best_ms = now_ms() - t;
    }
    r->device_bytes = m ? ms_sam_device_bytes(m) : 0;
    if (st == MS_OK) st = bench_decoder(m, be, emb, repeat, r->dec_ms);
    free(image);
    free(emb);
    ms_sam_free(m);
    ms_weights_free(w);
    return st;
}

/* s as a JSON string: quotes, backslashes and control characters escaped. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_gpu [-r REPEAT] [--tf32] [--json] WEIGHTS.msw\n"
               "  -r N    best of N after the first image (default 3)\n"
               "  --tf32  TF32 tensor-core GEMMs (default: fp32)\n"
               "  --json  print JSON instead of a table\n");
}

int main(int argc, char **argv)
{
    int repeat = 3, json = 0, tf32 = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--tf32")) tf32 = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!path || repeat < 1) {
        usage(stderr);
        return 2;
    }
    const char *why;
    ms_backend *be = ms_backend_get(MS_BACKEND_CUDA, &why);
    if (!be) {
        if (json) {
            printf("{\"usable\": false, \"why\": ");
            json_str(why);
            printf("}\n");
        } else {
            printf("CUDA unusable: %s\n", why);
        }
        return 0;
    }
    gpu_results r = {0};
    ms_status st = be->set_tf32(be, tf32) == MS_OK ? bench(path, be, repeat, &r)
                                                   : ms_fail(MS_ERR_UNSUPPORTED, "%s", be->error);
    if (st != MS_OK) {
        fprintf(stderr, "bench_gpu: %s\n", ms_last_error());
        ms_backend_release_all();
        return 1;
    }
    if (json) {
        printf("{\"usable\": true, \"device\": ");
        json_str(be->device);
        printf(", \"tf32\": %d, \"repeat\": %d, \"encoder_first_ms\": %.3f, \"encoder_ms\": %.3f, "
               "\"device_mb\": %.1f, \"decoder_box1_ms\": %.3f, \"decoder_box3_ms\": %.3f}\n",
               tf32, repeat, r.first_ms, r.best_ms, (double)r.device_bytes / 1048576,
               r.dec_ms[0], r.dec_ms[1]);
    } else {
        printf("%s, %s, best of %d\n  encoder, first image   %10.2f ms\n  encoder               "
               "%10.2f ms\n  weights + activations %10.1f MB on the device\n"
               "  decoder, 1 box        %10.2f ms\n  decoder, 3 boxes      %10.2f ms\n",
               be->device, tf32 ? "TF32" : "fp32", repeat, r.first_ms, r.best_ms,
               (double)r.device_bytes / 1048576, r.dec_ms[0], r.dec_ms[1]);
    }
    ms_backend_release_all();
    return 0;
}
