/* HardFault / MemManage / BusFault / UsageFault: remember where it happened, reset, and let the next boot
 * report it over the link (BOOT with reset cause 3, then a LOG naming the faulting PC) instead of
 * going silent. */
#include <stdio.h>

#include "cm4.h"

__attribute__((section(".noinit"))) cm4_noinit_t cm4_noinit;

void odl_fault_c(const uint32_t *sp);
void odl_fault_c(const uint32_t *sp) {
    cm4_noinit.magic = CM4_NOINIT_MAGIC;
    cm4_noinit.cause = 3;
    cm4_noinit.pc = sp[6];
    cm4_noinit.lr = sp[5];
    cm4_noinit.cfsr = SCB_CFSR;
    cm4_noinit.hfsr = SCB_HFSR;
    cm4_system_reset();
}

__attribute__((naked)) void odl_fault_handler(void);
__attribute__((naked)) void odl_fault_handler(void) {
    __asm__ volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "b odl_fault_c\n");
}

/* Reset cause from the record (consumed: a power cycle reads 0). */
uint8_t cm4_take_reset_cause(char *msg, unsigned cap) {
    uint8_t cause = 0;
    msg[0] = 0;
    if (cm4_noinit.magic == CM4_NOINIT_MAGIC) {
        cause = (uint8_t)cm4_noinit.cause;
        if (cause == 3)
            snprintf(msg, cap, "reset after a fault at PC 0x%08lX (LR 0x%08lX, CFSR 0x%08lX, HFSR 0x%08lX)",
                     (unsigned long)cm4_noinit.pc, (unsigned long)cm4_noinit.lr, (unsigned long)cm4_noinit.cfsr,
                     (unsigned long)cm4_noinit.hfsr);
    }
    cm4_noinit.magic = 0;
    return cause;
}

void cm4_reset_with_cause(uint8_t cause) {
    cm4_noinit.magic = CM4_NOINIT_MAGIC;
    cm4_noinit.cause = cause;
    cm4_system_reset();
}
