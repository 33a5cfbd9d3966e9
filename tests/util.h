/* Shared helpers for the Check suites: fixture lookup and array comparison. */
#ifndef MS_TESTS_UTIL_H
#define MS_TESTS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Full path of a file under $MEDSAM_FIXTURES (default ../shared/fixtures),
 * or NULL when the fixtures are absent (the caller skips, saying so).
 * Returns a static buffer, one of 8 rotating ones. */
const char *ms_test_fixture(const char *rel);
/* Prints "SKIP <what>: fixtures not found at <dir>" once per call. */
void ms_test_skip(const char *what);
/* The libmedsam_cuda.so this build made (BUILD/, the tests living in
 * BUILD/tests/), unless $MEDSAM_CUDA_LIB names one; sets $MEDSAM_CUDA_LIB to
 * it so that the CUDA backend is looked for there. */
const char *ms_test_cuda_library(void);
/* Path of a scratch file under build/ (created directory), rotating buffers. */
const char *ms_test_scratch(const char *name);

typedef struct ms_diff {
    double max_abs, mean_abs;
    int64_t argmax;
    int64_t n_sign_agree; /* elements where (a > 0) == (b > 0) */
} ms_diff;
ms_diff ms_test_diff(const float *a, const float *b, int64_t n);

/* $MEDSAM_CLI (set by `make test`) when it names an executable; else NULL
 * after printing "SKIP <what>: ...". */
const char *ms_test_cli(const char *what);
/* Runs "$MEDSAM_CLI ARGS" (ARGS is shell text). Its stdout goes into out and
 * its stderr into err, each NUL-terminated and cut at its size; either may be
 * NULL to discard. Returns the exit status, -1 when it did not exit. */
int ms_test_run_cli(const char *args, char *out, size_t n_out, char *err, size_t n_err);

/* A whole file in a malloc'd buffer with a NUL after it; fails the test when
 * it cannot be read. */
uint8_t *ms_test_slurp(const char *path, uint64_t *len);

/* A growing byte buffer, for building files byte by byte in tests. */
typedef struct ms_test_buf {
    uint8_t *p;
    size_t n, cap;
} ms_test_buf;
void ms_test_put(ms_test_buf *b, const void *src, size_t n);
void ms_test_put_le16(ms_test_buf *b, uint32_t v);
void ms_test_put_le32(ms_test_buf *b, uint32_t v);

/* Deterministic uniform floats in [lo, hi) (xorshift). */
void ms_test_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t *state);

#endif
