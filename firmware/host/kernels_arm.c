/*
 * odl-kernels.elf: host/kernels_main.c built for the Cortex-M4F and run under qemu-system-arm -M mps2-an386
 * with semihosting, so the tests feed the same requests to the ARM build (assembly kernels) and to the
 * native build (their C twins) and compare the results bit for bit.
 *
 * The command line comes from the file odl-kargs.txt (one argument per line), stdin from odl-kin.bin and
 * stdout goes to odl-kout.bin, all in QEMU's working directory (semihosting opens files on the host).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../targets/common/cm4.h"

extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;
extern void initialise_monitor_handles(void);
int kernels_main(int argc, char **argv);
void reset_handler(void);

static void hang(void) {
    /* a fault in a test harness: report it and leave QEMU with a non-zero status */
    static const char m[] = "odl-kernels.elf: fault\n";
    fwrite(m, 1, sizeof m - 1, stderr);
    exit(99);
}

__attribute__((section(".vectors"), used)) const void *const vectors[16] = {
    &__stack_top, (void *)reset_handler, (void *)hang, (void *)hang, (void *)hang, (void *)hang, (void *)hang,
};

static char argbuf[512];

void reset_handler(void) {
    memcpy(&__data_start, &__data_load, (size_t)((uint8_t *)&__data_end - (uint8_t *)&__data_start));
    memset(&__bss_start, 0, (size_t)((uint8_t *)&__bss_end - (uint8_t *)&__bss_start));
    cm4_enable_fpu();
    initialise_monitor_handles();
    char *argv[8] = {"odl-kernels"};
    int argc = 1;
    FILE *f = fopen("odl-kargs.txt", "r");
    size_t n = f ? fread(argbuf, 1, sizeof argbuf - 1, f) : 0;
    if (f) fclose(f);
    argbuf[n] = 0;
    for (char *p = strtok(argbuf, "\n"); p && argc < 8; p = strtok(NULL, "\n")) argv[argc++] = p;
    if (!freopen("odl-kin.bin", "rb", stdin) || !freopen("odl-kout.bin", "wb", stdout)) {
        fputs("odl-kernels.elf: cannot open odl-kin.bin / odl-kout.bin\n", stderr);
        exit(98);
    }
    int rc = kernels_main(argc, argv);
    fflush(stdout);
    exit(rc);
}
