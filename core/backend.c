/* The backend registry: the CPU backend, and the CUDA backend found and
 * loaded with dlopen the first time someone asks for it. */
#include "core/backend.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CUDA_LIB "libmedsam_cuda.so"
#define NOT_FOUND "library " CUDA_LIB " not found (built without nvcc?)"

typedef struct entry {
    int probed, usable;
    ms_backend be;
    char why[256];
} entry;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static entry g_entries[MS_BACKEND_COUNT];

const char *ms_backend_id_name(ms_backend_id id)
{
    return id == MS_BACKEND_CUDA ? "cuda" : "cpu";
}

/* ---- finding and loading libmedsam_cuda.so ---- */

/* The library's path beside /proc/self/exe, or "" when that is unknown. */
static void beside_exe(char *dst, size_t n)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    dst[0] = 0;
    if (len <= 0) return;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) snprintf(dst, n, "%.*s/" CUDA_LIB, (int)(slash - exe), exe);
}

/* dlopen with the reason kept. Returns the handle, or NULL with why set. */
static void *open_lib(const char *path, char *why, size_t n)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, n, "cannot load %s: %s", path, dlerror());
    return h;
}

/* A bare name goes through the loader's search, whose "no such file" means
 * the library is simply not installed. */
static void *open_from_loader_path(char *why, size_t n)
{
    void *h = dlopen(CUDA_LIB, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    const char *err = dlerror();
    if (strstr(err, CUDA_LIB ": cannot open shared object file"))
        snprintf(why, n, NOT_FOUND);
    else
        snprintf(why, n, "cannot load " CUDA_LIB ": %s", err);
    return NULL;
}

/* The candidates in order; an existing file that fails to load is reported
 * as it is rather than skipped, since loading the next one would hide why. */
static void *find_lib(char *why, size_t n)
{
    char path[4200];
    beside_exe(path, sizeof path);
    if (path[0] && access(path, F_OK) == 0) return open_lib(path, why, n);
    const char *env = getenv("MEDSAM_CUDA_LIB");
    if (env && *env) {
        if (!strchr(env, '/') || access(env, F_OK) == 0) return open_lib(env, why, n);
        void *h = open_from_loader_path(why, n);
        if (!h && !strcmp(why, NOT_FOUND))
            snprintf(why, n, NOT_FOUND "; MEDSAM_CUDA_LIB=%s: no such file", env);
        return h;
    }
    return open_from_loader_path(why, n);
}

/* Loading libmedsam_cuda.so brings in the CUDA runtime and cuBLAS, whose
 * relocations alone add about 150 MB to the resident memory: without a
 * driver they could never run, so the driver is looked for first. */
static int driver_present(char *why, size_t why_len)
{
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h) {
        dlclose(h);
        return 1;
    }
    const char *err = dlerror();
    const char *prefix = "libcuda.so.1: ";
    if (!strncmp(err, prefix, strlen(prefix))) err += strlen(prefix);
    snprintf(why, why_len, "no NVIDIA driver (libcuda.so.1: %s)", err);
    return 0;
}

int ms_backend_cuda_load(ms_backend *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    if (!driver_present(why, why_len)) return 1;
    return ms_backend_cuda_open(out, why, why_len);
}

/* After the init ran the library stays loaded even when it failed: the
 * CUDA runtime may have registered exit handlers inside it. */
int ms_backend_cuda_open(ms_backend *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    void *h = find_lib(why, why_len);
    if (!h) return 1;
    ms_cuda_backend_init_fn init;
    *(void **)&init = dlsym(h, "ms_cuda_backend_init");
    if (!init) {
        struct link_map *lm = NULL;
        int named = dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm->l_name[0];
        snprintf(why, why_len, "%s has no ms_cuda_backend_init (not a medsam CUDA backend)",
                 named ? lm->l_name : CUDA_LIB);
        dlclose(h);
        return 1;
    }
    return init(MS_BACKEND_ABI, out, why, why_len) != 0;
}

/* ---- the registry ---- */

static void probe(ms_backend_id id, entry *e)
{
    if (id == MS_BACKEND_CPU) {
        e->usable = ms_backend_cpu_init(&e->be) == MS_OK;
        if (!e->usable) memcpy(e->why, e->be.error, sizeof e->why); /* both 256 bytes */
    } else {
        e->usable = ms_backend_cuda_load(&e->be, e->why, sizeof e->why) == 0;
    }
    e->probed = 1;
}

ms_backend *ms_backend_get(ms_backend_id id, const char **why)
{
    if (id < 0 || id >= MS_BACKEND_COUNT) id = MS_BACKEND_CPU;
    entry *e = &g_entries[id];
    pthread_mutex_lock(&g_mu);
    if (!e->probed) probe(id, e);
    pthread_mutex_unlock(&g_mu);
    if (why) *why = e->usable ? "" : e->why;
    return e->usable ? &e->be : NULL;
}

int ms_backend_choice_valid(const char *choice)
{
    return choice && (!strcmp(choice, "auto") || !strcmp(choice, "cpu") || !strcmp(choice, "cuda"));
}

ms_status ms_backend_select(const char *choice, ms_backend **out)
{
    if (choice && !ms_backend_choice_valid(choice))
        return ms_fail(MS_ERR_ARG, "backend '%s': expected auto, cpu or cuda", choice);
    const char *why;
    int want_cpu = choice && !strcmp(choice, "cpu"), want_cuda = choice && !strcmp(choice, "cuda");
    *out = want_cpu ? NULL : ms_backend_get(MS_BACKEND_CUDA, &why);
    if (!*out && want_cuda) return ms_fail(MS_ERR_UNSUPPORTED, "backend cuda unusable: %s", why);
    if (!*out) *out = ms_backend_get(MS_BACKEND_CPU, &why);
    if (!*out) return ms_fail(MS_ERR_NOMEM, "backend cpu unusable: %s", why);
    return MS_OK;
}

void ms_backend_release_all(void)
{
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MS_BACKEND_COUNT; i++) {
        entry *e = &g_entries[i];
        if (e->probed && e->usable) e->be.release(&e->be);
        memset(e, 0, sizeof *e);
    }
    pthread_mutex_unlock(&g_mu);
}
