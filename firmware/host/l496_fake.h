/* The fake STM32L496 register file of the NUCLEO-L496ZG host tests (l496_fake.c). */
#ifndef ODL_L496_FAKE_H
#define ODL_L496_FAKE_H

#include <stdint.h>

#include "../targets/nucleo-l496zg/regs.h"

enum { FAKE_I2C_PRESENT = 0, FAKE_I2C_ABSENT = 1, FAKE_I2C_STUCK = 2 };
/* faults of the chip (fake.stuck, kept across fake_reset): what never happens */
enum {
    FAKE_STUCK_PLL = 1,      /* the PLL never locks */
    FAKE_STUCK_MSI = 2,      /* MSIRDY never reads 1 */
    FAKE_STUCK_VOSF = 4,     /* a rise to Range 1 never settles (VOSF stays 1) */
    FAKE_STUCK_ACR = 8,      /* FLASH_ACR's LATENCY keeps its value whatever is written */
    FAKE_STUCK_SWS = 16,     /* a SYSCLK switch never happens (SWS keeps the old source) */
    FAKE_STUCK_PLLSTOP = 32, /* the PLL never stops (PLLRDY stays 1 after PLLON is cleared) */
    FAKE_STUCK_HSI = 64,     /* HSI16 never gets ready */
};
#define FAKE_FOREVER 0xFFFFFFFFu
#define FAKE_FIFO 512u /* words */
#define FAKE_WIRE 65536u /* TX bytes the host collects */
#define FAKE_HQ 65536u   /* RX bytes the host may queue */
#define FAKE_EDGES 256u

typedef struct {
    uint64_t now_us;
    unsigned long violations;
    /* clock tree */
    uint32_t latency_in_force, vosf_reads, pll_reads, msirdy_reads;
    int pllrdy_drop;
    unsigned stuck; /* FAKE_STUCK_* */
    /* I2C bus and the LSM6DSO */
    int i2c_mode;
    unsigned long i2c_starts, lsm_writes, resets;
    uint8_t lsm[128], lsm_ptr;
    uint32_t swreset_reads, swreset_len; /* reads of CTRL3_C that still show SW_RESET; how many after a reset */
    unsigned long nack_at;               /* the START with this number (i2c_starts) is not acknowledged */
    unsigned long berr_at;               /* the START with this number meets a bus error (BERR) */
    uint8_t fifo[FAKE_FIFO][7];
    uint32_t fifo_head, fifo_n;
    int fifo_overrun;
    /* the bus lines PB8 (SCL) / PB9 (SDA) while the pins are GPIO outputs (bus clear): a slave holding SDA low
     * for sda_hold more SCL clocks (FAKE_FOREVER: never lets go); what the master did to the lines */
    l496_gpio_t gpiob_at_reset;
    uint32_t sda_hold;
    unsigned long scl_pulses, stops;
    uint64_t scl_rose_us, scl_fell_us;
    uint32_t min_scl_low_us, min_scl_high_us, min_stop_setup_us;
    /* a slave stretching the clock: TXIS/RXNE/TC/STOPF show only stretch_us after each START or byte */
    uint32_t stretch_us;
    uint64_t stretch_until;
    /* for l496_wait: l496_fake_scratch reads 1 from scratch_ready_at on; the clock jumps by jump_us at the
     * jump_countdown-th l496_now_us() call from now (an interrupt that took long) */
    uint64_t scratch_ready_at;
    uint32_t jump_us, jump_countdown;
    /* ---- what board_l496.c uses (time, TIM2, DWT, NVIC/PRIMASK, LPUART1 + DMA2, GPIOF/G) ---- */
    uint64_t synced_us;   /* the peripherals have been moved on up to this time */
    uint64_t cyc_rem;     /* HCLK cycles not yet counted, in Hz * us */
    uint32_t last_hclk;   /* HCLK at the last step (a change with a TX byte in flight is flagged) */
    uint32_t tim_pc, tim_psc; /* TIM2 prescaler counter and the prescaler in force (PSC is preloaded) */
    uint32_t primask, nvic[3];
    int in_isr;
    unsigned long isr_calls[4]; /* TIM2, DMA2 ch6, DMA2 ch7, LPUART1 */
    unsigned long wfis;
    uint32_t demcr, dwt_ctrl, dwt_cyccnt, idcode, core_other;
    uint32_t dma_prog[8]; /* CNDTR as programmed (circular reload, memory offset) per channel */
    /* LPUART1 TX: the transmit data register and the shift register; the wire's far end (the host) */
    int tdr_full, shifting;
    uint8_t tdr, shift_byte;
    int64_t shift_left; /* the byte's remaining time in 1/256 LPUART kernel clock cycles */
    uint32_t shift_hclk;
    uint8_t wire[FAKE_WIRE];
    uint32_t wire_n;
    uint32_t wire_baud_min, wire_baud_max;
    uint64_t wire_first_ns, wire_last_ns;
    /* LPUART1 RX: bytes the host sends at 921 600 baud, one burst after the other */
    uint8_t hq[FAKE_HQ];
    uint32_t hq_head, hq_n, burst_k;
    uint64_t burst_ns;              /* the start of the current burst */
    uint64_t idle_at_ns;            /* IDLE is set then unless another byte came (0: not armed) */
    unsigned long rx_bytes, rx_lost; /* received; lost (UE/RE off, no DMA, bad baud or pins) */
    /* PF13 (the D7 marker): its edges with their times */
    uint64_t edge_us[FAKE_EDGES];
    uint8_t edge_level[FAKE_EDGES];
    uint32_t edge_n, pf13;
    /* the reset-surviving record of fault.c and where board_reset goes (the harness's setjmp) */
    uint32_t rec_magic, rec_cause;
    void *reset_jmp;
    /* races: register reads cost nothing (rd_free), and the clock jumps by acc_jump_us at the acc_jump_at-th
     * register access from now (an interrupt-free instant between two accesses) */
    int rd_free;
    uint32_t acc_jump_at, acc_jump_us;
} fake_t;

extern fake_t fake;
extern L496_REG l496_fake_scratch;

void fake_reset(int i2c_mode);
void fake_fifo_push(const uint8_t w[7]);
uint32_t fake_sysclk(void);
uint32_t fake_hclk(void);
/* board_l496.c's chip: move the peripherals on to fake.now_us (interrupts taken when unmasked) */
void fake_sync(void);
void fake_host_send(const uint8_t *b, uint32_t n); /* the host sends these bytes (after any queued) */
uint32_t fake_wire_baud(void);                     /* what LPUART1's BRR and HCLK give now */

#endif
