/* Start-up for QEMU mps2-an386 (Cortex-M4F): vector table, reset handler, fault handler, no heap. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../../core/proto.h"
#include "../common/cm4.h"

extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;
void reset_handler(void);
void odl_fault_handler(void);

static void default_handler(void) {
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) const void *const vectors[16 + 32] = {
    &__stack_top,
    (void *)reset_handler,
    (void *)odl_fault_handler, /* NMI */
    (void *)odl_fault_handler, /* HardFault */
    (void *)odl_fault_handler, /* MemManage */
    (void *)odl_fault_handler, /* BusFault */
    (void *)odl_fault_handler, /* UsageFault */
    0, 0, 0, 0,
    (void *)default_handler, /* SVC */
    (void *)default_handler, /* DebugMon */
    0,
    (void *)default_handler, /* PendSV */
    (void *)default_handler, /* SysTick */
};

void reset_handler(void) {
    memcpy(&__data_start, &__data_load, (size_t)((uint8_t *)&__data_end - (uint8_t *)&__data_start));
    memset(&__bss_start, 0, (size_t)((uint8_t *)&__bss_end - (uint8_t *)&__bss_start));
    cm4_enable_fpu();
    odl_main();
}

/* No dynamic allocation after start-up: the C library gets no heap. */
void *_sbrk(intptr_t incr) {
    (void)incr;
    errno = ENOMEM;
    return (void *)-1;
}
