/* The fake STM32L496 register file of the NUCLEO-L496ZG host tests (l496_fake.c). */
#ifndef ODL_L496_FAKE_H
#define ODL_L496_FAKE_H

#include <stdint.h>

enum { FAKE_I2C_PRESENT = 0, FAKE_I2C_ABSENT = 1, FAKE_I2C_STUCK = 2 };
#define FAKE_FIFO 512u /* words */

typedef struct {
    uint64_t now_us;
    unsigned long violations;
    /* clock tree */
    uint32_t latency_in_force, vosf_reads, pll_reads, msirdy_reads;
    int pllrdy_drop, pll_stuck;
    /* I2C bus and the LSM6DSO */
    int i2c_mode;
    unsigned long i2c_starts, lsm_writes, resets;
    uint8_t lsm[128], lsm_ptr;
    uint32_t swreset_reads;
    uint8_t fifo[FAKE_FIFO][7];
    uint32_t fifo_head, fifo_n;
    int fifo_overrun;
} fake_t;

extern fake_t fake;

void fake_reset(int i2c_mode);
void fake_fifo_push(const uint8_t w[7]);
uint32_t fake_sysclk(void);
uint32_t fake_hclk(void);

#endif
