/* model/: the ViT-B SAM of the fixtures (sam/vit_b_s1: the keys and shapes of
 * medsam_vit_b.pth, random weights) against the official code's float64
 * outputs: the first 8 token rows after the patch embedding, block 0 and
 * block 2 (the first global block), the image embedding, the dense PE and
 * the seven prompt cases; the same with q8 weights (q8/), and the q8 masks'
 * Dice against the f32 masks next to the references' own. The same
 * references for the encoder run through the CUDA backend's table
 * (ms_sam_encode_on, f32 and q8) when CUDA is usable, else skipped, saying
 * why (the CPU backend's table is checked on the tiny SAM), and the seven
 * cases with the decoder through the CPU backend's table (ms_sam_decode_on)
 * on the CPU path's embedding. Prints the
 * encoder time, the decode time per box and the peak activation memory.
 *
 * model.pth.gz is unpacked once into the scratch folder and kept there; the
 * conversions and the two encodings (f32, q8) run once in main(). The tests
 * run without fork: a forked child would have none of the worker threads of
 * the kernels' and the models' pools. Each test builds its own model. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/backend.h"
#include "model/sam.h"
#include "util.h"
#include "util_model.h"

#define DIR "sam/vit_b_s1"
#define DIR_Q8 "sam/vit_b_s1/q8"
#define THREADS 2
#define ROWS 8 /* token rows of the grid kept by the block fixtures */

/* Rows 0-7 after: patch embed + pos, block 0, block 2 (the block hook). */
typedef struct captured {
    const ms_test_model *tm;
    float *rows[3];
} captured;

static struct {
    const char *skip; /* fixtures absent: every test passes saying so */
    char err[512];    /* unpacking or cases.jsonl failed */
    ms_test_model f32, f16, q8;
    captured cap;
    ms_backend *cuda; /* NULL: unusable, cuda_why says why */
    const char *cuda_why;
    ms_test_model cuda_f32, cuda_q8;
    captured cuda_cap;
    ms_case cases[MS_CASE_MAX];
    int n_cases;
} g;

static const char *const k_row_files[3] = {
    "enc_patch_embed_pos_rows0-7.npy", "enc_block00_rows0-7.npy", "enc_block02_rows0-7.npy"};

static void capture(void *ctx, int block, const float *x)
{
    captured *c = ctx;
    int slot = block == -1 ? 0 : block == 0 ? 1 : block == 2 ? 2 : -1;
    if (slot < 0) return;
    size_t bytes = (size_t)(ROWS * c->tm->grid * c->tm->embed_dim) * sizeof(float);
    c->rows[slot] = malloc(bytes);
    if (c->rows[slot]) memcpy(c->rows[slot], x, bytes);
}

static void setup_cuda(const char *pth)
{
    ms_test_cuda_library();
    g.cuda = ms_backend_get(MS_BACKEND_CUDA, &g.cuda_why);
    if (!g.cuda) return;
    g.cuda_cap.tm = &g.cuda_f32;
    ms_test_model_prepare_on(&g.cuda_f32, DIR, pth, MS_CONVERT_F32, "vit_b_f32_cuda.msw",
                             THREADS, g.cuda, capture, &g.cuda_cap);
    printf("ViT-B f32 encoder on CUDA (%s): %.3f s, first image (weights uploaded)\n",
           g.cuda->device, g.cuda_f32.encode_ms / 1e3);
    ms_test_model_prepare_on(&g.cuda_q8, DIR, pth, MS_CONVERT_Q8, "vit_b_q8_cuda.msw", THREADS,
                             g.cuda, NULL, NULL);
}

/* Unpacks gz into out unless out exists; writes a temporary file first so
 * that out is never partial. Returns 0 on success. */
static int gunzip_once(const char *gz, const char *out)
{
    if (access(out, R_OK) == 0) return 0;
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%.600s.tmp%d", out, (int)getpid());
    gzFile in = gzopen(gz, "rb");
    FILE *f = fopen(tmp, "wb");
    static char buf[1 << 20];
    int n = -1, ok = in && f;
    while (ok && (n = gzread(in, buf, sizeof buf)) > 0)
        ok = fwrite(buf, 1, (size_t)n, f) == (size_t)n;
    ok = ok && n == 0;
    if (in && gzclose(in) != Z_OK) ok = 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, out) == 0) return 0;
    remove(tmp);
    snprintf(g.err, sizeof g.err, "cannot unpack %.200s into %.200s", gz, out);
    return -1;
}

static void setup(void)
{
    const char *gz = ms_test_fixture(DIR "/model.pth.gz");
    if (!gz) {
        g.skip = DIR;
        return;
    }
    /* A stable name (no pid), so that later runs reuse the 375 MB. */
    const char *dir = getenv("MEDSAM_SCRATCH");
    char pth[600];
    ms_test_scratch("probe"); /* creates the scratch folder */
    snprintf(pth, sizeof pth, "%s/vit_b_s1_model.pth", dir && *dir ? dir : "build/scratch");
    if (gunzip_once(gz, pth)) return;
    g.cap.tm = &g.f32;
    ms_test_model_prepare(&g.f32, DIR, pth, MS_CONVERT_F32, "vit_b_f32.msw", THREADS, capture, &g.cap);
    printf("ViT-B f32 encoder: %.2f s (%d threads), peak activations %.1f MB\n",
           g.f32.encode_ms / 1e3, THREADS, (double)g.f32.peak_bytes / 1e6);
    ms_test_model_prepare(&g.q8, DIR, pth, MS_CONVERT_Q8, "vit_b_q8.msw", THREADS, NULL, NULL);
    /* The fixture weights are exact in half precision: the f16 file must
     * meet the same references at the same tolerances. */
    ms_test_model_prepare(&g.f16, DIR, pth, MS_CONVERT_F16, "vit_b_f16.msw", THREADS, NULL, NULL);
    printf("ViT-B q8 encoder: %.2f s (%d threads)\n", g.q8.encode_ms / 1e3, THREADS);
    setup_cuda(pth);
    const char *err;
    g.n_cases = ms_test_read_cases(ms_test_fixture(DIR "/cases.jsonl"), g.cases, MS_CASE_MAX, &err);
    if (g.n_cases < 0) snprintf(g.err, sizeof g.err, "%s", err);
}

/* 1: run the test; 0: skipped (said so). */
static int ready(const ms_test_model *tm)
{
    if (g.skip) {
        ms_test_skip(g.skip);
        return 0;
    }
    ck_assert_msg(g.err[0] == 0, "setup: %s", g.err);
    ck_assert_msg(tm->err[0] == 0, "setup: %s", tm->err);
    return 1;
}

static void check_rows(const captured *c, int i)
{
    if (!ready(c->tm)) return;
    ck_assert_ptr_nonnull(c->rows[i]);
    int64_t n = ROWS * c->tm->grid * c->tm->embed_dim;
    ms_test_assert_close(DIR, k_row_files[i], c->rows[i], n, 2e-3);
}

START_TEST(test_encoder_rows) { check_rows(&g.cap, _i); }
END_TEST

/* 1: the CUDA half runs; 0: skipped, said why. */
static int cuda_ready(void)
{
    if (g.skip) {
        ms_test_skip(g.skip);
        return 0;
    }
    if (g.cuda) return 1;
    printf("SKIP ViT-B encoder on CUDA: unusable: %s\n", g.cuda_why);
    return 0;
}

START_TEST(test_cuda_rows)
{
    if (cuda_ready()) check_rows(&g.cuda_cap, _i);
}
END_TEST

START_TEST(test_cuda_embeddings)
{
    if (!cuda_ready()) return;
    const ms_test_model *tm = _i ? &g.cuda_q8 : &g.cuda_f32;
    if (!ready(tm)) return;
    printf("cuda: ");
    ms_test_check_embeddings(tm, _i ? DIR_Q8 : DIR);
}
END_TEST

static void check_embeddings(const ms_test_model *tm, const char *dir)
{
    if (ready(tm)) ms_test_check_embeddings(tm, dir);
}

START_TEST(test_image_embeddings) { check_embeddings(&g.f32, DIR); }
END_TEST

START_TEST(test_image_embeddings_q8) { check_embeddings(&g.q8, DIR_Q8); }
END_TEST

START_TEST(test_image_embeddings_f16) { check_embeddings(&g.f16, DIR); }
END_TEST

START_TEST(test_dense_pe)
{
    if (ready(&g.f32)) ms_test_check_dense_pe(&g.f32, DIR, THREADS);
}
END_TEST

static void run_case(const ms_test_model *tm, const char *dir, int i)
{
    if (!ready(tm)) return;
    ck_assert_msg(g.n_cases == 7, "cases.jsonl: %d cases, expected 7", g.n_cases);
    ms_test_check_case(tm, dir, &g.cases[i], THREADS);
}

START_TEST(test_cases) { run_case(&g.f32, DIR, _i); }
END_TEST

START_TEST(test_cases_q8) { run_case(&g.q8, DIR_Q8, _i); }
END_TEST

START_TEST(test_cases_f16) { run_case(&g.f16, DIR, _i); }
END_TEST

/* The decoder through the CPU backend's table: the ViT-B sizes (a 64 x 64
 * grid of 256 channels) that the tiny SAM does not reach. */
START_TEST(test_cases_cpu_backend)
{
    const char *why;
    ms_backend *cpu = ms_backend_get(MS_BACKEND_CPU, &why);
    ck_assert_msg(cpu, "cpu backend: %s", why);
    ms_test_model on = g.f32; /* a view: g.f32 keeps ownership */
    on.be = cpu;
    printf("backend cpu: ");
    run_case(&on, DIR, _i);
}
END_TEST

/* _i = (q8 ? n_cases : 0) + the case */
START_TEST(test_cuda_cases)
{
    int n = g.n_cases > 0 ? g.n_cases : 1, q8 = _i / n;
    if (!cuda_ready()) return;
    const ms_test_model *tm = q8 ? &g.cuda_q8 : &g.cuda_f32;
    if (!ready(tm)) return;
    printf("cuda: ");
    run_case(tm, q8 ? DIR_Q8 : DIR, _i % n);
}
END_TEST

/* q8 weights perturb the masks as PyTorch's same quantisation does: the Dice
 * of our q8 masks against our f32 masks is the references' own. */
START_TEST(test_q8_dice)
{
    if (!ready(&g.f32) || !ready(&g.q8)) return;
    double ours, ref;
    ms_test_case_dice(&g.f32, DIR, &g.q8, DIR_Q8, &g.cases[_i], THREADS, &ours, &ref);
    printf("q8 vs f32 %-14s Dice %.4f (references %.4f)\n", g.cases[_i].name, ours, ref);
    ck_assert_msg(fabs(ours - ref) <= 0.01, "%s: q8 vs f32 Dice %.4f, references %.4f",
                  g.cases[_i].name, ours, ref);
}
END_TEST

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Decoding is deterministic: the same box gives the same bits every time.
 * Reports the time per box (prompt encoder + decoder). */
START_TEST(test_decode_repeatable_and_timed)
{
    if (!ready(&g.f32)) return;
    enum { REPEAT = 5 };
    ms_sam *m = ms_test_sam(&g.f32, THREADS);
    const ms_sam_hparams *h = ms_sam_params(m);
    int64_t px = 16 * h->grid * h->grid;
    ms_prompt p = {.has_box = 1, .box = {300.5f, 280.25f, 700.0f, 610.75f}};
    float *first = malloc((size_t)px * sizeof(float)), *again = malloc((size_t)px * sizeof(float));
    float iou0, iou;
    ck_assert_int_eq(ms_sam_decode(m, g.f32.emb, &p, 1, 0, first, &iou0, NULL, NULL), MS_OK);
    double t0 = now_ms();
    for (int i = 0; i < REPEAT; i++) {
        ck_assert_int_eq(ms_sam_decode(m, g.f32.emb, &p, 1, 0, again, &iou, NULL, NULL), MS_OK);
        ck_assert_mem_eq(first, again, (size_t)px * sizeof(float));
        ck_assert_float_eq(iou, iou0);
    }
    printf("ViT-B decode: %.1f ms per box (%d threads), peak activations %.1f MB\n",
           (now_ms() - t0) / REPEAT, THREADS, (double)ms_sam_peak_bytes(m) / 1e6);
    free(first);
    free(again);
    ms_sam_free(m);
}
END_TEST

int main(void)
{
    setup(); /* a failed setup fails every test with its message */
    Suite *s = suite_create("model_vitb");
    TCase *tc = tcase_create("model_vitb");
    tcase_set_timeout(tc, 300);
    int cases = g.n_cases > 0 ? g.n_cases : 1;
    tcase_add_loop_test(tc, test_encoder_rows, 0, 3);
    tcase_add_test(tc, test_image_embeddings);
    tcase_add_test(tc, test_image_embeddings_q8);
    tcase_add_test(tc, test_image_embeddings_f16);
    tcase_add_test(tc, test_dense_pe);
    tcase_add_loop_test(tc, test_cases, 0, cases);
    tcase_add_loop_test(tc, test_cases_q8, 0, cases);
    tcase_add_loop_test(tc, test_cases_f16, 0, cases);
    tcase_add_loop_test(tc, test_cases_cpu_backend, 0, cases);
    tcase_add_loop_test(tc, test_q8_dice, 0, cases);
    tcase_add_test(tc, test_decode_repeatable_and_timed);
    tcase_add_loop_test(tc, test_cuda_rows, 0, 3);
    tcase_add_loop_test(tc, test_cuda_embeddings, 0, 2);
    tcase_add_loop_test(tc, test_cuda_cases, 0, 2 * cases);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    ms_test_model_release(&g.f32);
    ms_test_model_release(&g.q8);
    ms_test_model_release(&g.f16);
    ms_test_model_release(&g.cuda_f32);
    ms_test_model_release(&g.cuda_q8);
    for (int i = 0; i < 3; i++) {
        free(g.cap.rows[i]);
        free(g.cuda_cap.rows[i]);
    }
    ms_backend_release_all();
    return failed ? 1 : 0;
}
