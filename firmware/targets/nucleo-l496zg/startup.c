/*
 * Start-up for the STM32L496ZG (Cortex-M4F): the vector table (16 core + 91 device entries = 107, at the
 * start of flash, 512-byte aligned as VTOR requires for more than 64 entries), the reset handler and the
 * interrupt handlers' names.  Device IRQ numbers from ST's CMSIS stm32l496xx.h (IRQn_Type).
 *
 * Faults (NMI, HardFault, MemManage, BusFault, UsageFault) and any interrupt this firmware does not enable
 * go to targets/common/fault.c: the PC is recorded in .noinit, the chip resets, and the next boot reports
 * it over the link (BOOT with reset cause 3, then a LOG) instead of going silent.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../../core/proto.h"
#include "../common/cm4.h"
#include "regs.h"

extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;
void reset_handler(void);
void odl_fault_handler(void);
void l496_tim2_isr(void);
void l496_dma_tx_isr(void);
void l496_dma_rx_isr(void);
void l496_lpuart_isr(void);

#define SCB_VTOR REG32(0xE000ED08u)
#define N_VECTORS (16 + L496_N_IRQ)

typedef void (*vector_t)(void);
_Static_assert(L496_IRQ_DMA2_CH7 == L496_IRQ_DMA2_CH6 + 1 && L496_IRQ_LPUART1 == L496_IRQ_DMA2_CH7 + 1,
               "the vector table below lists DMA2_CH6, DMA2_CH7 and LPUART1 as neighbours");

__attribute__((section(".vectors"), used, aligned(512))) const vector_t vectors[N_VECTORS] = {
    [0] = (vector_t)(uintptr_t)&__stack_top,
    [1] = reset_handler,
    [2 ... 6] = odl_fault_handler,               /* NMI, HardFault, MemManage, BusFault, UsageFault */
    [11] = odl_fault_handler,                    /* SVCall: not used */
    [12] = odl_fault_handler,                    /* DebugMonitor */
    [14] = odl_fault_handler,                    /* PendSV */
    [15] = odl_fault_handler,                    /* SysTick: not used */
    /* device interrupts: the four this firmware uses, every other one is unexpected (a fault) */
    [16 ... 16 + L496_IRQ_TIM2 - 1] = odl_fault_handler,
    [16 + L496_IRQ_TIM2] = l496_tim2_isr,
    [16 + L496_IRQ_TIM2 + 1 ... 16 + L496_IRQ_DMA2_CH6 - 1] = odl_fault_handler,
    [16 + L496_IRQ_DMA2_CH6] = l496_dma_tx_isr,
    [16 + L496_IRQ_DMA2_CH7] = l496_dma_rx_isr,
    [16 + L496_IRQ_LPUART1] = l496_lpuart_isr,
    [16 + L496_IRQ_LPUART1 + 1 ... N_VECTORS - 1] = odl_fault_handler,
};

void reset_handler(void) {
    memcpy(&__data_start, &__data_load, (size_t)((uint8_t *)&__data_end - (uint8_t *)&__data_start));
    memset(&__bss_start, 0, (size_t)((uint8_t *)&__bss_end - (uint8_t *)&__bss_start));
    SCB_VTOR = (uint32_t)(uintptr_t)vectors;
    cm4_enable_fpu();
    odl_main();
}

/* No dynamic allocation after start-up: the C library gets no heap. */
void *_sbrk(intptr_t incr) {
    (void)incr;
    errno = ENOMEM;
    return (void *)-1;
}
