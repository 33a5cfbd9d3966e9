/* medsam backends: one line per compute backend, whether it can be used
 * here and, when not, why. On CUDA the image encoder and the mask decoder
 * run (the prompt encoder stays on the CPU), and the line says so. */
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "tools/cli.h"

#define CUDA_NOTE "image encoder and mask decoder; the prompt encoder runs on the CPU"

static void usage(void)
{
    printf("usage: medsam backends\n"
           "  Lists the compute backends: name, then \"usable\" (with the device) or\n"
           "  \"unusable: <why>\". The CUDA backend is build/libmedsam_cuda.so, looked for\n"
           "  beside the medsam binary, then at $MEDSAM_CUDA_LIB, then on the loader's path.\n"
           "  segment and encode take --backend auto|cpu|cuda (auto: CUDA when usable).\n");
}

static void print_backend(ms_backend_id id)
{
    const char *why;
    ms_backend *be = ms_backend_get(id, &why);
    printf("%-5s ", ms_backend_id_name(id));
    if (!be)
        printf("unusable: %s\n", why);
    else if (id == MS_BACKEND_CUDA)
        printf("usable (" CUDA_NOTE "): %s, %.1f GiB\n", be->device,
               (double)be->memory_bytes / (1024.0 * 1024.0 * 1024.0));
    else
        printf("usable: %s\n", be->device);
}

int cmd_backends(int argc, char **argv)
{
    if (argc > 1) {
        if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
            usage();
            return 0;
        }
        return ms_cli_error("backends", "unexpected argument '%s' (--help)", argv[1]);
    }
    for (int id = 0; id < MS_BACKEND_COUNT; id++) print_backend((ms_backend_id)id);
    ms_backend_release_all();
    return 0;
}
