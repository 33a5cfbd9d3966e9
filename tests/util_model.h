/* Shared by the model parity suites (test_model_tiny, test_model_vitb):
 * converting a fixture checkpoint, the cases.jsonl reader, and
 * one prompt case run against its reference files. */
#ifndef MS_TESTS_UTIL_MODEL_H
#define MS_TESTS_UTIL_MODEL_H

#include <stdint.h>

#include "convert/convert.h"
#include "core/error.h"
#include "model/sam.h"
#include "weights/msw.h"
#include "util.h"

#define MS_CASE_MAX 16
#define MS_CASE_MAX_BATCH 8
#define MS_CASE_MAX_POINTS 8

/* One line of cases.jsonl. */
typedef struct ms_case {
    char name[64];
    int multimask;
    int64_t batch;    /* prompts: boxes, or point sets */
    int has_box;
    int64_t n_points; /* per prompt */
    float boxes[MS_CASE_MAX_BATCH][4];
    float points[MS_CASE_MAX_BATCH][MS_CASE_MAX_POINTS][2];
    int32_t labels[MS_CASE_MAX_BATCH][MS_CASE_MAX_POINTS];
    char mask_input[128]; /* file beside cases.jsonl, or "" */
} ms_case;

/* Reads cases.jsonl; returns the number of cases, or -1 with *err set. */
int ms_test_read_cases(const char *path, ms_case *cases, int max, const char **err);

/* A fixture model ready for the tests: converted, opened, and the fixture
 * image encoded once. */
typedef struct ms_test_model {
    char err[512]; /* preparation failed: why ("" when ready) */
    char msw[512]; /* the converted weights, a scratch file */
    ms_weights *w;
    ms_backend *be; /* where it encoded and its cases decode; NULL: the CPU path */
    float *emb;    /* (out_chans, grid, grid) */
    int64_t depth, grid, embed_dim, out_chans, prompt_dim; /* set before the encoding */
    double encode_ms;
    uint64_t peak_bytes; /* the model's after the encoding */
} ms_test_model;

/* Converts pth with the fixture folder dir's config.txt into the scratch
 * file `name` (its path into msw): MS_OK, or a status with the message set
 * (MS_ERR_IO when the config is missing). */
ms_status ms_test_convert_fixture(const char *dir, const char *pth, ms_convert_dtype dtype,
                                  const char *name, char *msw, size_t n);

/* Converts pth (with dir's config.txt; f32, f16 or q8 weights) into the scratch
 * file `name`, opens it, and encodes dir's image_1024_u8.npy with `threads`
 * threads; hook (may be NULL) sees the encoder blocks. */
void ms_test_model_prepare(ms_test_model *tm, const char *dir, const char *pth, ms_convert_dtype dtype,
                           const char *name, int threads, ms_sam_block_hook hook, void *ctx);
/* The same with the encoder on a compute backend (ms_sam_encode_on), and
 * later the cases' decoder too (ms_sam_decode_on); be NULL: the CPU path,
 * as ms_test_model_prepare. */
void ms_test_model_prepare_on(ms_test_model *tm, const char *dir, const char *pth,
                              ms_convert_dtype dtype, const char *name, int threads,
                              ms_backend *be, ms_sam_block_hook hook, void *ctx);
/* Frees it and removes the scratch file. */
void ms_test_model_release(ms_test_model *tm);

typedef struct ms_case_result {
    ms_status st;
    char msg[512];            /* what went wrong when st != MS_OK or ok == 0 */
    int ok;                   /* every compared output within the tolerances */
    int has_sparse, has_dense; /* reference present and compared */
    ms_diff sparse, dense, logits, iou;
    double mask_agree;        /* fraction of pixels with the same sign */
    float *logits_out;        /* the decoded low-res logits (caller frees), or NULL */
    int64_t n_logits;
} ms_case_result;

/* Decodes case c (references under the fixtures' folder `dir`, such as
 * "sam/tiny_s1") against emb, on backend be (NULL: the CPU path), and compares with the fixtures' tolerances:
 * sparse / dense max abs <= 2e-3, logits max abs <= 0.15 and mean abs <=
 * 2e-3, IoU max abs <= 2e-3, masks (logit > 0) >= 99.9 % agreement. */
void ms_test_run_case(ms_sam *m, ms_backend *be, const float *emb, const char *dir,
                      const ms_case *c, ms_case_result *r);

/* Check assertion: x within max abs tol of the fixture dir/name (prints
 * the errors). */
void ms_test_assert_close(const char *dir, const char *name, const float *x, int64_t n,
                          double tol);
/* One line: the case's errors. */
void ms_test_print_case(const char *dir, const ms_case *c, const ms_case_result *r);

/* A model over tm's weights; fails the test when it cannot be made. */
ms_sam *ms_test_sam(const ms_test_model *tm, int threads);
/* tm's embedding against dir's image_embeddings.npy, and the dense PE of
 * tm's model against dir's dense_pe.npy (max abs <= 2e-3). */
void ms_test_check_embeddings(const ms_test_model *tm, const char *dir);
void ms_test_check_dense_pe(const ms_test_model *tm, const char *dir, int threads);
/* Case c decoded on tm's embedding, printed, and failed when out of the
 * tolerances of ms_test_run_case. */
void ms_test_check_case(const ms_test_model *tm, const char *dir, const ms_case *c, int threads);

/* Case c decoded on model a (references and mask input under dir_a) and
 * on model b (dir_b): *ours = the Dice of their masks (logit > 0), *ref =
 * the same between the two folders' reference logits. */
void ms_test_case_dice(const ms_test_model *a, const char *dir_a, const ms_test_model *b,
                       const char *dir_b, const ms_case *c, int threads, double *ours,
                       double *ref);

/* Reads a float32 .npy fixture (dir/name) into a malloc'd buffer of n
 * floats; NULL when absent, of another dtype, or not n elements. */
float *ms_test_read_f32(const char *dir, const char *name, int64_t n);

/* The fixture image (1024, 1024, 3) uint8 as the encoder input
 * (3, 1024, 1024) float32 in [0, 1]; NULL on failure. */
float *ms_test_read_image(const char *dir, int64_t size);

#endif
