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
} fake_t;

extern fake_t fake;
extern L496_REG l496_fake_scratch;

void fake_reset(int i2c_mode);
void fake_fifo_push(const uint8_t w[7]);
uint32_t fake_sysclk(void);
uint32_t fake_hclk(void);

#endif
