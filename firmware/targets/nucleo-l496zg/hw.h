/*
 * NUCLEO-L496ZG board support: how the register-level code reaches the hardware, and the interfaces
 * of its parts (docs/firmware-nucleo.md).
 *
 *   calc.c     pure arithmetic: clock plans, flash wait states, LPUART BRR, I2C TIMINGR, TIM2 prescaler,
 *              LSM6DSO codes, FIFO word decoding, reset cause, ring buffers
 *   clock.c    the SYSCLK switch (MSI / PLL, voltage range, flash latency) as a register sequence
 *   i2c.c      I2C1 master transfers, every wait bounded by a timeout
 *   lsm6dso.c  the accelerometer: WHO_AM_I, set-up, FIFO streaming
 *   board_l496.c  board.h on top of these, plus what only makes sense on silicon (NVIC, DMA, WFI, DWT)
 *
 * Register access goes through RD()/WR(): plain volatile accesses on the target; with -DL496_HOST
 * (host/l496_fake.c) calls into a fake register file that models the clock tree, the I2C bus and a
 * simulated LSM6DSO, and checks every write against the rules of RM0351.
 */
#ifndef ODL_L496_HW_H
#define ODL_L496_HW_H

#include <stddef.h>
#include <stdint.h>

#include "regs.h"

#ifdef L496_HOST
uint32_t l496_rd(L496_REG *r);
void l496_wr(L496_REG *r, uint32_t v);
#define RD(reg) l496_rd(&(reg))
#define WR(reg, v) l496_wr(&(reg), (uint32_t)(v))
extern l496_rcc_t l496_fake_rcc;
extern l496_pwr_t l496_fake_pwr;
extern l496_flash_t l496_fake_flash;
extern l496_tim_t l496_fake_tim2;
extern l496_usart_t l496_fake_lpuart1;
extern l496_i2c_t l496_fake_i2c1;
extern l496_dma_t l496_fake_dma2;
extern l496_gpio_t l496_fake_gpiob, l496_fake_gpiof, l496_fake_gpiog;
#define L_RCC (&l496_fake_rcc)
#define L_PWR (&l496_fake_pwr)
#define L_FLASH (&l496_fake_flash)
#define L_TIM2 (&l496_fake_tim2)
#define L_LPUART1 (&l496_fake_lpuart1)
#define L_I2C1 (&l496_fake_i2c1)
#define L_DMA2 (&l496_fake_dma2)
#define L_GPIOB (&l496_fake_gpiob)
#define L_GPIOF (&l496_fake_gpiof)
#define L_GPIOG (&l496_fake_gpiog)
extern volatile uint16_t l496_fake_flashsize; /* the factory flash-size word */
#undef L496_FLASHSIZE_ADDR
#define L496_FLASHSIZE_ADDR ((uintptr_t)&l496_fake_flashsize)
#else
#define RD(reg) (reg)
#define WR(reg, v) ((reg) = (uint32_t)(v))
#define L_RCC ((l496_rcc_t *)L496_RCC_BASE)
#define L_PWR ((l496_pwr_t *)L496_PWR_BASE)
#define L_FLASH ((l496_flash_t *)L496_FLASH_BASE)
#define L_TIM2 ((l496_tim_t *)L496_TIM2_BASE)
#define L_LPUART1 ((l496_usart_t *)L496_LPUART1_BASE)
#define L_I2C1 ((l496_i2c_t *)L496_I2C1_BASE)
#define L_DMA2 ((l496_dma_t *)L496_DMA2_BASE)
#define L_GPIOB ((l496_gpio_t *)L496_GPIOB_BASE)
#define L_GPIOF ((l496_gpio_t *)L496_GPIOF_BASE)
#define L_GPIOG ((l496_gpio_t *)L496_GPIOG_BASE)
#endif
#define SETB(reg, m) WR(reg, RD(reg) | (m))
#define CLRB(reg, m) WR(reg, RD(reg) & ~(uint32_t)(m))
#define MODIFY(reg, clr, set) WR(reg, (RD(reg) & ~(uint32_t)(clr)) | (uint32_t)(set))
/* A peripheral clock enable, read back before the peripheral is touched (ST's __HAL_RCC_xxx_CLK_ENABLE does
 * the same: the enable takes effect a few bus cycles later). */
#define RCC_ENABLE(reg, m) (SETB(reg, m), (void)RD(reg))

/* Microseconds for timeouts (TIM2 on the board, a simulated clock on the host). Wraps. */
uint32_t l496_now_us(void);
/* Wait until (reg & mask) == want, at most timeout_us; 0 ok, -1 timed out. */
int l496_wait(L496_REG *reg, uint32_t mask, uint32_t want, uint32_t timeout_us);

/* ==== calc.c: pure functions ======================================================================== */
#define L496_BAUD 921600u

typedef struct {
    uint32_t hclk;    /* resulting CPU/AHB/APB clock, Hz */
    uint32_t sysclk;  /* SYSCLK before the AHB prescaler */
    uint8_t use_pll;  /* 0: SYSCLK = MSI, 1: SYSCLK = PLL R output (PLL input: MSI at 4 MHz) */
    uint8_t msirange; /* MSIRANGE code of the MSI (the PLL input when use_pll) */
    uint8_t pllm, plln, pllr;
    uint16_t hpre_div; /* AHB prescaler 1, 2, 4, 8 */
    uint8_t vos;       /* voltage range 1 or 2 */
    uint8_t latency;   /* flash wait states */
} l496_clock_plan_t;

uint32_t l496_msi_hz(uint8_t range);               /* 0 if not a range code */
int l496_flash_latency(uint32_t hclk, uint8_t vos); /* wait states, -1 if hclk too high for the range */
int l496_clock_plan(uint32_t hclk, l496_clock_plan_t *p);
uint32_t l496_pllcfgr(const l496_clock_plan_t *p);
uint32_t l496_hpre_bits(uint16_t div); /* HPRE field value (already shifted) */
uint32_t l496_ahb_div(uint32_t hpre);   /* the AHB divider an HPRE code (not shifted) selects */
uint32_t l496_lpuart_brr(uint32_t fck, uint32_t baud); /* 0 if not reachable */
uint32_t l496_tim2_psc(uint32_t ftim);                  /* prescaler for a 1 MHz count */
/* I2C TIMINGR for Fast-mode (<= 400 kHz) at I2CCLK = fck, rise/fall times in ns; 0 if impossible. */
uint32_t l496_i2c_timingr(uint32_t fck, uint32_t rise_ns, uint32_t fall_ns);
#define L496_I2C_RISE_NS 300u /* Fast-mode maximum: no assumption about the shield's pull-ups */
#define L496_I2C_FALL_NS 300u

/* LSM6DSO register codes (docs: ../shared/reference/firmware-targets.md §4) */
int l496_lsm_odr_code(uint32_t odr_mhz); /* ODR_XL / BDR_XL code, -1 if not an LSM6DSO rate */
int l496_lsm_fs_code(uint8_t fs_g);      /* FS_XL code, -1 if not 2/4/8/16 */
uint32_t l496_lsm_sens_ug(uint8_t fs_g); /* sensitivity, micro-g per LSB */
/* One FIFO word (FIFO_DATA_OUT_TAG + 6 bytes): 1 and xyz filled if it is an uncompressed accelerometer
 * sample (tag 0x02), 0 for any other tag. */
int l496_lsm_fifo_word(const uint8_t w[7], int16_t xyz[3]);
/* FIFO_STATUS1/2 -> unread words; *overrun = FIFO_OVR_IA | OVER_RUN_LATCHED */
uint16_t l496_lsm_fifo_level(uint8_t status1, uint8_t status2, int *overrun);
/* After an overrun: the index of the oldest sample still in the FIFO, estimated from the time since
 * sample 0 (the samples between were overwritten). Never less than next. */
uint32_t l496_lsm_resync_index(uint32_t next, uint64_t t0, uint64_t now, uint32_t odr_mhz, uint16_t level);
/* How often to look into the FIFO while streaming (about 4 samples, 5..100 ms). */
uint32_t l496_lsm_poll_us(uint32_t odr_mhz);

/* RCC_CSR flags (+ the reset-surviving record of fault.c) -> board.h reset cause */
uint8_t l496_reset_cause(uint32_t csr, int record_valid, uint8_t record_cause);

/* Byte rings with free-running 32-bit indices (size a power of two). */
static inline uint32_t l496_ring_used(uint32_t head, uint32_t tail) { return head - tail; }
/* Bytes a DMA may send in one go from tail: contiguous up to the end of the buffer. */
static inline uint32_t l496_ring_chunk(uint32_t head, uint32_t tail, uint32_t size) {
    uint32_t used = head - tail, off = tail & (size - 1u);
    return used < size - off ? used : size - off;
}
/* Circular DMA reception: bytes written since rd, given CNDTR (counts down from size). */
static inline uint32_t l496_rx_avail(uint32_t rd, uint32_t cndtr, uint32_t size) {
    uint32_t wr = (size - cndtr) % size;
    return (wr + size - rd) % size;
}

/* ==== clock.c ======================================================================================== */
/* Switch to a plan (the caller drains the UART first and recomputes BRR/PSC after).  0 ok; -1 a ready flag
 * timed out: the chip is then on the MSI in Range 1 with 4 wait states, a legal state to restore from. */
int l496_clock_apply(const l496_clock_plan_t *p);
uint32_t l496_clock_hclk(void);                    /* what the registers say now */

/* ==== i2c.c =========================================================================================== */
void l496_i2c_init(void);           /* pins, kernel clock HSI16, TIMINGR (the peripheral stays off) */
int l496_i2c_enable(int on);        /* HSI16 + PE on/off; 0 ok, -2 HSI16 did not start */
uint32_t l496_i2c_timing_in_use(void);
/* Write w (may be empty) then, after a repeated START, read r (may be empty).  0 ok, -1 NACK, -2 timeout /
 * bus error (the peripheral is reset). */
int l496_i2c_xfer(uint8_t addr7, const uint8_t *w, size_t nw, uint8_t *r, size_t nr);
#define L496_I2C_TIMEOUT_US 2000u

/* ==== lsm6dso.c ======================================================================================= */
#define L496_LSM_ADDR 0x6Bu /* SA0 high on the X-NUCLEO-IKS01A3 */
#define L496_LSM_WHOAMI 0x6Cu
typedef struct {
    int fresh;      /* FIFO_STATUS was read by this call: level/overrun are valid */
    int overrun;    /* samples were overwritten before they were read */
    uint16_t level; /* words in the FIFO when its status was read */
    int more;       /* words of that level are still unread */
} l496_lsm_status_t;
uint8_t l496_lsm_probe(void);                       /* WHO_AM_I if 0x6C and the set-up worked, else 0 */
int l496_lsm_start(uint32_t odr_mhz, uint8_t fs_g); /* power on, FIFO continuous; 0 ok, -1 error */
void l496_lsm_stop(void);
/* Up to max samples from the FIFO (reads FIFO_STATUS only when the words it reported last time are all
 * read).  Returns the samples copied, -1 on a bus error. */
int l496_lsm_read(int16_t (*xyz)[3], size_t max, l496_lsm_status_t *st);

#endif
