#include "util.h"

#include <check.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *fixtures_dir(void)
{
    const char *d = getenv("MEDSAM_FIXTURES");
    return d && *d ? d : "../shared/fixtures";
}

const char *ms_test_fixture(const char *rel)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", fixtures_dir(), rel);
    return access(b, R_OK) == 0 ? b : NULL;
}

void ms_test_skip(const char *what)
{
    printf("SKIP %s: fixtures not found at %s (set MEDSAM_FIXTURES)\n", what, fixtures_dir());
}

const char *ms_test_scratch(const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    const char *dir = getenv("MEDSAM_SCRATCH");
    if (!dir || !*dir) dir = "build/scratch";
    mkdir("build", 0755);
    mkdir(dir, 0755);
    snprintf(b, sizeof bufs[0], "%s/%d_%s", dir, (int)getpid(), name);
    return b;
}

ms_diff ms_test_diff(const float *a, const float *b, int64_t n)
{
    ms_diff d = {0, 0, -1, 0};
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d.max_abs)) { /* also catches NaN */
            d.max_abs = isnan(e) ? INFINITY : e;
            d.argmax = i;
        }
        sum += e;
        d.n_sign_agree += (a[i] > 0) == (b[i] > 0);
    }
    d.mean_abs = n ? sum / (double)n : 0;
    return d;
}

void ms_test_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t *state)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t s = *state;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *state = s;
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

uint8_t *ms_test_slurp(const char *path, uint64_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (uint64_t)n;
    return b;
}

void ms_test_put(ms_test_buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

void ms_test_put_le16(ms_test_buf *b, uint32_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    ms_test_put(b, x, 2);
}

void ms_test_put_le32(ms_test_buf *b, uint32_t v)
{
    ms_test_put_le16(b, v & 0xffff);
    ms_test_put_le16(b, v >> 16);
}

const char *ms_test_cli(const char *what)
{
    const char *c = getenv("MEDSAM_CLI");
    if (c && *c && access(c, X_OK) == 0) return c;
    printf("SKIP %s: set MEDSAM_CLI to build/medsam (make test does)\n", what);
    return NULL;
}

/* Reads what the file holds into buf (cut at n - 1 bytes), then removes it. */
static void take_file(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t got = f && buf ? fread(buf, 1, n - 1, f) : 0;
    if (buf) buf[got] = 0;
    if (f) fclose(f);
    remove(path);
}

int ms_test_run_cli(const char *args, char *out, size_t n_out, char *err, size_t n_err)
{
    char cmd[8192];
    const char *log = ms_test_scratch("cli_stderr.txt");
    int len = snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", getenv("MEDSAM_CLI"), args, log);
    ck_assert_int_lt(len, (int)sizeof cmd);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char sink[4096];
    size_t got = 0;
    for (;;) { /* fill out, then drain the rest so the child never blocks */
        size_t room = out ? n_out - 1 - got : 0;
        size_t n = room ? fread(out + got, 1, room, p) : fread(sink, 1, sizeof sink, p);
        if (n == 0) break;
        if (room) got += n;
    }
    if (out) out[got] = 0;
    int st = pclose(p);
    take_file(log, err, n_err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *ms_test_cuda_library(void)
{
    static char lib[4200];
    const char *env = getenv("MEDSAM_CUDA_LIB");
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    if (env && *env)
        snprintf(lib, sizeof lib, "%s", env);
    else
        snprintf(lib, sizeof lib, "%s/../libmedsam_cuda.so", exe);
    setenv("MEDSAM_CUDA_LIB", lib, 1);
    return lib;
}
