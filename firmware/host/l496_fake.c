/*
 * A fake STM32L496 register file for the host tests of the NUCLEO-L496ZG board support (-DL496_HOST):
 * the register-level code (targets/nucleo-l496zg/clock.c, i2c.c, lsm6dso.c) runs unchanged against it.
 *
 * What is modelled, and checked:
 *   - the clock tree: MSI ranges, the PLL (locks a few reads after PLLON), SYSCLK switch status, AHB
 *     prescaler, voltage range (VOSF shows a rise to Range 1 for a few reads), flash latency (in force
 *     once read back).  After every write to RCC/PWR/FLASH the rules of RM0351 are checked (see clock.c);
 *     a break is recorded as a VIOLATION line;
 *   - the I2C1 master (START/address/NACK/TXIS/RXNE/TC/STOPF, TIMINGR only while PE = 0, the HSI16
 *     kernel clock) with, on the bus, a simulated LSM6DSO at 0x6B: register file, software reset, FIFO of
 *     7-byte words with FIFO_STATUS1/2; or no device (NACK) or a stuck bus (BUSY forever);
 *   - the pins PB8/PB9: at every I2C START they must be I2C1's (AF4, open drain, pull-up, medium speed) and
 *     no other pin of GPIOB may have been changed; while they are GPIO outputs (bus clear) the lines follow
 *     BSRR, a slave may hold SDA low for a number of SCL clocks, and the clocks' low/high times and the
 *     STOP's set-up time are recorded;
 *   - faults (fake.stuck): a PLL that never locks or never stops, MSI or HSI16 never ready, a voltage range
 *     that never settles, a flash latency that does not change, a SYSCLK switch that does not happen; a
 *     slave that stretches the clock;
 *   - time: every register read and every l496_now_us() call advances the simulated clock by 1 us, so
 *     timeouts end and the test can bound how long a failure took (the clock can also be made to jump, as
 *     after a long interrupt);
 *   - for board_l496.c: TIM2 (counting at HCLK / (PSC + 1), compare flags, overflow, rc_w0 SR, UG), the DWT
 *     cycle counter, PRIMASK / NVIC / WFI with the four interrupt handlers, LPUART1 with DMA2 channels 6
 *     (TX) and 7 (RX, circular) and a simulated host on the wire, GPIOF's PF13 edges, GPIOG; its rules are
 *     listed at "the chip board_l496.c uses" below.
 * Anything else is plain memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../targets/common/cm4.h"
#include "../targets/nucleo-l496zg/hw.h"
#include "l496_fake.h"

l496_rcc_t l496_fake_rcc;
l496_pwr_t l496_fake_pwr;
l496_flash_t l496_fake_flash;
l496_tim_t l496_fake_tim2;
l496_usart_t l496_fake_lpuart1;
l496_i2c_t l496_fake_i2c1;
l496_dma_t l496_fake_dma2;
l496_gpio_t l496_fake_gpiob, l496_fake_gpiof, l496_fake_gpiog;

fake_t fake;
L496_REG l496_fake_scratch;

void fake_sync(void);
/* the timeouts of clock.c / i2c.c: TIM2's count once board_l496.c runs it (as on the board), else the
 * simulated microseconds */
uint32_t l496_now_us(void) {
    if (fake.jump_countdown && --fake.jump_countdown == 0) fake.now_us += fake.jump_us;
    ++fake.now_us;
    fake_sync();
    return (l496_fake_tim2.CR1 & TIM_CR1_CEN) ? l496_fake_tim2.CNT : (uint32_t)fake.now_us;
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fake.violations++;
    if (fake.violations <= 20) printf("VIOLATION %s\n", msg);
}

/* ---- clock tree ------------------------------------------------------------------------------------- */
#define RCC_CR_HSION (1u << 8)
#define RCC_CR_HSIRDY (1u << 10)

static uint32_t msi_now(void) {
    uint32_t cr = l496_fake_rcc.CR;
    uint8_t range =
        (cr & RCC_CR_MSIRGSEL) ? (uint8_t)((cr >> 4) & 0xFu) : (uint8_t)((l496_fake_rcc.CSR >> 8) & 0xFu);
    return l496_msi_hz(range);
}

static void pll_numbers(uint64_t *in, uint64_t *vco, uint64_t *out) {
    uint32_t c = l496_fake_rcc.PLLCFGR;
    uint32_t m = ((c >> 4) & 7u) + 1u, n = (c >> 8) & 0x7Fu, r = (((c >> 25) & 3u) + 1u) * 2u;
    *in = (c & 3u) == 1u ? msi_now() / m : 0u;
    *vco = *in * n;
    *out = *vco / r;
}

static uint8_t vos_now(void) {
    if (fake.vosf_reads) return 2; /* still settling towards Range 1 */
    return (uint8_t)((l496_fake_pwr.CR1 >> 9) & 3u);
}

uint32_t fake_sysclk(void) {
    uint32_t sws = (l496_fake_rcc.CFGR >> 2) & 3u;
    if (sws == 3u) {
        uint64_t in, vco, out;
        pll_numbers(&in, &vco, &out);
        return (uint32_t)out;
    }
    return sws == 0u ? msi_now() : 16000000u;
}

uint32_t fake_hclk(void) {
    static const uint32_t DIV[16] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 8, 16, 64, 128, 256, 512}; /* RM0351 HPRE */
    return fake_sysclk() / DIV[(l496_fake_rcc.CFGR >> 4) & 0xFu];
}

static void check_clock(const char *after) {
    uint8_t vos = vos_now();
    uint32_t sys = fake_sysclk(), hclk = fake_hclk(), limit = vos == 1 ? 80000000u : 26000000u;
    if (vos != 1 && vos != 2) violation("%s: invalid voltage range code %u", after, vos);
    if (sys > limit || hclk > limit)
        violation("%s: SYSCLK %u / HCLK %u Hz above the Range %u limit", after, (unsigned)sys, (unsigned)hclk, vos);
    int need = l496_flash_latency(hclk, vos);
    if (need >= 0 && fake.latency_in_force < (uint32_t)need)
        violation("%s: %u wait states in force, HCLK %u Hz in Range %u needs %d", after,
                  (unsigned)fake.latency_in_force, (unsigned)hclk, vos, need);
    if (l496_fake_rcc.CR & (RCC_CR_PLLON | RCC_CR_PLLRDY)) {
        uint64_t in, vco, out;
        pll_numbers(&in, &vco, &out);
        unsigned long long i = in, v = vco, o = out;
        if (in < 4000000u || in > 16000000u) violation("%s: PLL input %llu Hz outside 4..16 MHz", after, i);
        if (vco < 64000000u || vco > 344000000u) violation("%s: VCO %llu Hz outside 64..344 MHz", after, v);
        if (vos == 2 && vco > 128000000u) violation("%s: VCO %llu Hz above 128 MHz in Range 2", after, v);
        if (out > 80000000u) violation("%s: PLL output %llu Hz above 80 MHz", after, o);
    }
}

static void w_rcc_cr(uint32_t v) {
    uint32_t old = l496_fake_rcc.CR;
    if (((old ^ v) & (RCC_CR_MSIRANGE_MSK | RCC_CR_MSIRGSEL)) && (v & RCC_CR_MSIRGSEL)) {
        if (!(old & RCC_CR_MSIRDY)) violation("RCC_CR: MSIRANGE changed while MSI not ready");
        if (old & RCC_CR_PLLON) violation("RCC_CR: MSIRANGE changed while the PLL (fed by the MSI) runs");
        fake.msirdy_reads = 1;
    }
    if ((old & RCC_CR_PLLON) && !(v & RCC_CR_PLLON) && ((l496_fake_rcc.CFGR >> 2) & 3u) == 3u)
        violation("RCC_CR: PLL stopped while it is SYSCLK");
    if (!(old & RCC_CR_PLLON) && (v & RCC_CR_PLLON)) fake.pll_reads = (fake.stuck & FAKE_STUCK_PLL) ? FAKE_FOREVER : 3u;
    uint32_t ro = RCC_CR_MSIRDY | RCC_CR_PLLRDY | RCC_CR_HSIRDY;
    l496_fake_rcc.CR = (v & ~ro) | (old & ro);
    if (!(v & RCC_CR_PLLON)) fake.pllrdy_drop = 1;
    if (!(v & RCC_CR_HSION)) l496_fake_rcc.CR &= ~RCC_CR_HSIRDY;
    check_clock("RCC_CR write");
}

static uint32_t r_rcc_cr(void) {
    uint32_t *cr = (uint32_t *)&l496_fake_rcc.CR;
    if (fake.msirdy_reads) {
        fake.msirdy_reads--;
        *cr &= ~RCC_CR_MSIRDY;
    } else if ((*cr & RCC_CR_MSION) && !(fake.stuck & FAKE_STUCK_MSI)) {
        *cr |= RCC_CR_MSIRDY;
    }
    if (fake.stuck & FAKE_STUCK_MSI) *cr &= ~RCC_CR_MSIRDY;
    if (*cr & RCC_CR_PLLON) {
        if (fake.pll_reads && fake.pll_reads != FAKE_FOREVER && --fake.pll_reads == 0) *cr |= RCC_CR_PLLRDY;
    } else if (fake.pllrdy_drop && !(fake.stuck & FAKE_STUCK_PLLSTOP)) {
        fake.pllrdy_drop = 0;
        *cr &= ~RCC_CR_PLLRDY;
    }
    if (fake.stuck & FAKE_STUCK_HSI) *cr &= ~RCC_CR_HSIRDY;
    else if (*cr & RCC_CR_HSION) *cr |= RCC_CR_HSIRDY;
    return *cr;
}

static void w_rcc_cfgr(uint32_t v) {
    uint32_t sw = v & 3u, sws = (l496_fake_rcc.CFGR >> 2) & 3u;
    if (sw == 3u && sws != 3u && !(l496_fake_rcc.CR & RCC_CR_PLLRDY))
        violation("RCC_CFGR: PLL selected before it locked");
    if (sw == 3u && !(l496_fake_rcc.CR & RCC_CR_PLLRDY)) sw = sws; /* the switch does not happen */
    if (fake.stuck & FAKE_STUCK_SWS) sw = sws;
    if (sw == 1u || sw == 2u) violation("RCC_CFGR: HSI16/HSE as SYSCLK is not used by this board");
    l496_fake_rcc.CFGR = (v & ~RCC_CFGR_SWS_MSK) | (sw << 2);
    if ((v & (RCC_CFGR_PPRE1_MSK | RCC_CFGR_PPRE2_MSK)) != 0) violation("RCC_CFGR: APB prescalers must stay 1");
    check_clock("RCC_CFGR write");
}

static void w_rcc_pllcfgr(uint32_t v) {
    if (l496_fake_rcc.CR & (RCC_CR_PLLON | RCC_CR_PLLRDY)) violation("RCC_PLLCFGR written while the PLL is on");
    l496_fake_rcc.PLLCFGR = v;
    check_clock("RCC_PLLCFGR write");
}

static void w_pwr_cr1(uint32_t v) {
    uint32_t old = (l496_fake_pwr.CR1 >> 9) & 3u, new = (v >> 9) & 3u;
    if (!(l496_fake_rcc.APB1ENR1 & RCC_APB1ENR1_PWREN)) violation("PWR_CR1 written with the PWR clock off");
    l496_fake_pwr.CR1 = v;
    if (old == 2u && new == 1u) fake.vosf_reads = 3;
    check_clock("PWR_CR1 write");
}

static uint32_t r_pwr_sr2(void) {
    uint32_t v = fake.vosf_reads ? PWR_SR2_VOSF : 0u;
    if (fake.vosf_reads && !(fake.stuck & FAKE_STUCK_VOSF)) fake.vosf_reads--;
    return v;
}

static void w_flash_acr(uint32_t v) {
    if (fake.stuck & FAKE_STUCK_ACR) v = (v & ~FLASH_ACR_LATENCY_MSK) | (l496_fake_flash.ACR & FLASH_ACR_LATENCY_MSK);
    uint32_t lat = v & FLASH_ACR_LATENCY_MSK;
    if (lat > 4u) violation("FLASH_ACR: LATENCY %u is reserved (0..4 wait states)", (unsigned)lat);
    l496_fake_flash.ACR = v;
    if (lat < fake.latency_in_force) fake.latency_in_force = lat; /* fewer wait states act at once */
    check_clock("FLASH_ACR write");
}

static uint32_t r_flash_acr(void) {
    fake.latency_in_force = l496_fake_flash.ACR & FLASH_ACR_LATENCY_MSK; /* more act once read back */
    return l496_fake_flash.ACR;
}

/* ---- GPIOB: the I2C pins PB8 (SCL) / PB9 (SDA) ----------------------------------------------------------- */
#define PIN_SCL 8u
#define PIN_SDA 9u
#define FIELD2(reg, pin) (((reg) >> (2u * (pin))) & 3u)

static int pin_is_output(uint32_t pin) { return FIELD2(l496_fake_gpiob.MODER, pin) == 1u; }

/* the line level: a GPIO output drives it (open drain: ODR 1 releases it to the pull-up); otherwise (I2C1 or
 * input) it idles high; a slave holding SDA pulls it low whatever the master does */
static int scl_level(void) { return pin_is_output(PIN_SCL) ? (int)((l496_fake_gpiob.ODR >> PIN_SCL) & 1u) : 1; }
static int sda_level(void) {
    if (fake.sda_hold) return 0;
    return pin_is_output(PIN_SDA) ? (int)((l496_fake_gpiob.ODR >> PIN_SDA) & 1u) : 1;
}

static uint32_t r_gpiob_idr(void) {
    uint32_t v = l496_fake_gpiob.IDR & ~((1u << PIN_SCL) | (1u << PIN_SDA));
    return v | ((uint32_t)scl_level() << PIN_SCL) | ((uint32_t)sda_level() << PIN_SDA);
}

static void keep_min(uint32_t *m, uint64_t us) {
    if (us < *m) *m = (uint32_t)us;
}

static void w_gpiob_bsrr(uint32_t v) {
    l496_gpio_t *g = &l496_fake_gpiob;
    int scl0 = scl_level(), sda0 = sda_level();
    for (uint32_t pin = PIN_SCL; pin <= PIN_SDA; pin++)
        if ((v & ((1u << pin) | (1u << (pin + 16u)))) && pin_is_output(pin) && !((g->OTYPER >> pin) & 1u))
            violation("GPIOB: PB%u driven push-pull on the I2C bus (it must be open drain)", (unsigned)pin);
    g->ODR = (g->ODR | (v & 0xFFFFu)) & ~(v >> 16);
    int scl1 = scl_level(), sda1 = sda_level();
    if (!scl0 && scl1) { /* a clock: the slave shifts one bit out */
        fake.scl_pulses++;
        keep_min(&fake.min_scl_low_us, fake.now_us - fake.scl_fell_us);
        fake.scl_rose_us = fake.now_us;
        if (fake.sda_hold && fake.sda_hold != FAKE_FOREVER) fake.sda_hold--;
        sda1 = sda_level();
    }
    if (scl0 && !scl1) {
        if (fake.scl_rose_us) keep_min(&fake.min_scl_high_us, fake.now_us - fake.scl_rose_us);
        fake.scl_fell_us = fake.now_us;
    }
    if (scl1 && !sda0 && sda1 && scl0) { /* SDA rises while SCL is high: a STOP */
        fake.stops++;
        keep_min(&fake.min_stop_setup_us, fake.now_us - fake.scl_rose_us);
    }
}

/* At a START: PB8/PB9 belong to I2C1 (RM0351 GPIO: MODER 10 = AF, OTYPER 1 = open drain; reference §2.5:
 * AF4; the weak pull-ups and medium speed this board uses), and nothing else of GPIOB was touched. */
static void check_i2c_pins(void) {
    const l496_gpio_t *g = &l496_fake_gpiob, *r = &fake.gpiob_at_reset;
    for (uint32_t pin = PIN_SCL; pin <= PIN_SDA; pin++) {
        uint32_t af = (g->AFR[1] >> (4u * (pin - 8u))) & 0xFu;
        if (FIELD2(g->MODER, pin) != 2u || af != 4u || !((g->OTYPER >> pin) & 1u) || FIELD2(g->PUPDR, pin) != 1u ||
            FIELD2(g->OSPEEDR, pin) != 1u)
            violation("I2C1 START with PB%u not set up for I2C1 (MODER %u AF %u OTYPER %u PUPDR %u OSPEEDR %u)",
                      (unsigned)pin, (unsigned)FIELD2(g->MODER, pin), (unsigned)af, (unsigned)((g->OTYPER >> pin) & 1u),
                      (unsigned)FIELD2(g->PUPDR, pin), (unsigned)FIELD2(g->OSPEEDR, pin));
    }
    uint32_t two = ~((3u << (2u * PIN_SCL)) | (3u << (2u * PIN_SDA))), one = ~((1u << PIN_SCL) | (1u << PIN_SDA));
    if (((g->MODER ^ r->MODER) & two) || ((g->PUPDR ^ r->PUPDR) & two) || ((g->OSPEEDR ^ r->OSPEEDR) & two) ||
        ((g->OTYPER ^ r->OTYPER) & one) || (g->AFR[0] != r->AFR[0]) || ((g->AFR[1] ^ r->AFR[1]) & ~0xFFu))
        violation("GPIOB: a pin other than PB8/PB9 was changed by the I2C code");
}

/* ---- I2C1 + LSM6DSO ---------------------------------------------------------------------------------- */
static struct {
    int busy, rd, autoend, first, remaining;
    uint8_t addr, rxbyte;
} bus;

static uint8_t lsm_get(uint8_t reg) {
    if (reg == 0x3A || reg == 0x3B) {
        uint32_t n = fake.fifo_n;
        uint8_t s2 = (uint8_t)((n >> 8) & 3u) | (fake.fifo_overrun ? (1u << 6) | (1u << 3) : 0u);
        if (reg == 0x3B) fake.fifo_overrun = 0; /* latched flags reset when read */
        return reg == 0x3A ? (uint8_t)n : s2;
    }
    if (reg >= 0x78 && reg <= 0x7E) {
        if (reg == 0x78 && !fake.fifo_n) violation("LSM6DSO FIFO read while empty (more words than FIFO_STATUS said)");
        uint8_t b = fake.fifo_n ? fake.fifo[fake.fifo_head][reg - 0x78] : 0u;
        if (reg == 0x7E && fake.fifo_n) {
            fake.fifo_head = (fake.fifo_head + 1u) % FAKE_FIFO;
            fake.fifo_n--;
        }
        return b;
    }
    if (reg == 0x12 && fake.swreset_reads) {
        if (fake.swreset_reads != FAKE_FOREVER) fake.swreset_reads--;
        return (uint8_t)(fake.lsm[0x12] | 1u);
    }
    return fake.lsm[reg & 0x7F];
}

static void lsm_put(uint8_t reg, uint8_t v) {
    fake.lsm_writes++;
    if (fake.swreset_reads) violation("LSM6DSO register 0x%02x written during its software reset", reg);
    if (reg == 0x12 && (v & 1u)) { /* SW_RESET: registers to their reset values, bit reads 1 a while */
        memset(fake.lsm, 0, sizeof fake.lsm);
        fake.lsm[0x0F] = 0x6C;
        fake.lsm[0x12] = 0x04;
        fake.swreset_reads = fake.swreset_len ? fake.swreset_len : 2u;
        fake.resets++;
        return;
    }
    if (reg == 0x0A && (v & 7u) == 0u) fake.fifo_n = 0, fake.fifo_head = 0; /* bypass empties the FIFO */
    fake.lsm[reg & 0x7F] = v;
}

static int device_acks(void) {
    return fake.i2c_mode == FAKE_I2C_PRESENT && bus.addr == L496_LSM_ADDR && fake.i2c_starts != fake.nack_at;
}

static void i2c_stop(void) {
    bus.busy = 0;
    l496_fake_i2c1.ISR = (l496_fake_i2c1.ISR & ~(I2C_ISR_TXIS | I2C_ISR_RXNE | I2C_ISR_TC)) | I2C_ISR_STOPF;
}

static void i2c_byte_done(void) {
    if (--bus.remaining > 0) return;
    l496_fake_i2c1.ISR &= ~(I2C_ISR_TXIS | I2C_ISR_RXNE);
    if (bus.autoend) i2c_stop();
    else l496_fake_i2c1.ISR |= I2C_ISR_TC;
}

static void w_i2c_cr2(uint32_t v) {
    l496_i2c_t *i = &l496_fake_i2c1;
    i->CR2 = v & ~(I2C_CR2_START | I2C_CR2_STOP);
    if (v & I2C_CR2_STOP) {
        i2c_stop();
        return;
    }
    if (!(v & I2C_CR2_START)) return;
    if (!(i->CR1 & I2C_CR1_PE)) violation("I2C1 START with PE = 0");
    if ((l496_fake_rcc.CCIPR >> 12 & 3u) != 2u || !(l496_fake_rcc.CR & RCC_CR_HSIRDY))
        violation("I2C1 START without its HSI16 kernel clock");
    check_i2c_pins();
    if (fake.i2c_mode == FAKE_I2C_STUCK) {
        i->ISR |= I2C_ISR_BUSY; /* a slave holds the bus: nothing ever completes */
        return;
    }
    if (fake.sda_hold) { /* SDA is low: the master cannot make its START (RM0351: arbitration lost) */
        i->ISR |= I2C_ISR_ARLO;
        return;
    }
    fake.stretch_until = fake.now_us + fake.stretch_us;
    if (bus.busy && !(i->ISR & I2C_ISR_TC)) violation("I2C1 START while a transfer is in progress");
    bus.busy = 1;
    bus.addr = (uint8_t)((v & 0x3FFu) >> 1);
    bus.rd = (v & I2C_CR2_RD_WRN) != 0;
    bus.autoend = (v & I2C_CR2_AUTOEND) != 0;
    bus.remaining = (int)((v >> I2C_CR2_NBYTES_POS) & 0xFFu);
    bus.first = !bus.rd;
    i->ISR &= ~(I2C_ISR_TC | I2C_ISR_STOPF);
    fake.i2c_starts++;
    if (fake.i2c_starts == fake.berr_at) { /* a misplaced START/STOP on the bus: the transfer is abandoned */
        i->ISR |= I2C_ISR_BERR;
        return;
    }
    if (!device_acks()) { /* address NACK: the master ends the transfer with a STOP by itself */
        i->ISR |= I2C_ISR_NACKF;
        i2c_stop();
        return;
    }
    if (bus.rd) {
        bus.rxbyte = lsm_get(fake.lsm_ptr++);
        i->ISR |= I2C_ISR_RXNE;
    } else {
        i->ISR |= I2C_ISR_TXIS;
    }
}

static void w_i2c_txdr(uint32_t v) {
    if (!bus.busy || bus.rd || !(l496_fake_i2c1.ISR & I2C_ISR_TXIS)) {
        violation("I2C1 TXDR written without TXIS");
        return;
    }
    fake.stretch_until = fake.now_us + fake.stretch_us;
    if (bus.first) fake.lsm_ptr = (uint8_t)v, bus.first = 0;
    else lsm_put(fake.lsm_ptr++, (uint8_t)v);
    i2c_byte_done();
}

static uint32_t r_i2c_rxdr(void) {
    if (!bus.busy || !bus.rd || !(l496_fake_i2c1.ISR & I2C_ISR_RXNE)) {
        violation("I2C1 RXDR read without RXNE");
        return 0;
    }
    uint8_t b = bus.rxbyte;
    fake.stretch_until = fake.now_us + fake.stretch_us;
    i2c_byte_done();
    if (bus.remaining > 0) bus.rxbyte = lsm_get(fake.lsm_ptr++);
    return b;
}

static void w_i2c_cr1(uint32_t v) {
    l496_fake_i2c1.CR1 = v;
    if (!(v & I2C_CR1_PE)) { /* software reset: state machine and flags cleared */
        l496_fake_i2c1.ISR = I2C_ISR_TXE | (fake.i2c_mode == FAKE_I2C_STUCK ? I2C_ISR_BUSY : 0u);
        bus.busy = 0;
    }
}

/* ---- the chip board_l496.c uses: TIM2, DWT, NVIC/PRIMASK/WFI, LPUART1 + DMA2, GPIOF/GPIOG ----------------
 * Driven by the simulated clock: fake_sync() moves the peripherals on from fake.synced_us to fake.now_us at
 * the HCLK the RCC model gives, in steps that end at each event (a TIM2 compare or overflow, a byte on the
 * wire), and takes a pending enabled interrupt after each step unless PRIMASK is set or a handler runs (one
 * priority: handlers do not nest).  Checked (a VIOLATION line each): a peripheral written with its clock off;
 * GPIOG written before PWR_CR2.IOSV; LPUART1 BRR written while UE = 1 or a TX byte is in flight; HCLK changed
 * with a TX byte in flight; a DMA channel's CPAR/CMAR/CNDTR written while it is enabled; a byte on the wire
 * with PG7/PG8 not in AF8 or at a baud rate more than 2 % from 921 600. */
void l496_tim2_isr(void);
void l496_dma_tx_isr(void);
void l496_dma_rx_isr(void);
void l496_lpuart_isr(void);

volatile uint16_t l496_fake_flashsize;

#define IN(r, blk) ((const volatile char *)(r) >= (const volatile char *)&(blk) && \
                    (const volatile char *)(r) < (const volatile char *)&(blk) + sizeof(blk))
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART_CR1_TCIE (1u << 6)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_ICR_TCCF (1u << 6)
#define DMA_CCR_TEIE (1u << 3)
#define BAUD_NS(k) ((uint64_t)(k) * 10000000000ull / L496_BAUD) /* k frames of 10 bits from the host */

static uint32_t tim_div(void) { return fake.tim_psc + 1u; }

/* the memory behind a 32-bit DMA address: the upper half of this program's own (static buffers) */
extern char __executable_start[], _end[];
static uint8_t *dma_mem(uint32_t a, uint32_t n) {
    uintptr_t lo = (uintptr_t)__executable_start, hi = (uintptr_t)_end;
    uintptr_t cand[2] = {(lo & ~(uintptr_t)0xFFFFFFFFu) | a, (hi & ~(uintptr_t)0xFFFFFFFFu) | a};
    for (int k = 0; k < 2; k++)
        if (cand[k] >= lo && cand[k] + n <= hi) return (uint8_t *)cand[k];
    violation("DMA2: memory address 0x%08x is not in this program's RAM", (unsigned)a);
    return NULL;
}

static uint32_t dma_flags(uint32_t ch) { return (l496_fake_dma2.ISR >> (4u * (ch - 1u))) & 0xFu; }
static void dma_flag(uint32_t ch, uint32_t f) { l496_fake_dma2.ISR |= (f | 1u) << (4u * (ch - 1u)); }
static int dma_serves_lpuart(uint32_t ch) {
    const l496_dma_ch_t *c = &l496_fake_dma2.CH[ch - 1u];
    return (c->CCR & DMA_CCR_EN) && ((l496_fake_dma2.CSELR >> DMA_CSELR_POS(ch)) & 0xFu) == L496_LPUART_DMA_REQ;
}
/* one transfer of a channel: its memory byte (NULL if the address is bad), then the count, HT/TC */
static uint8_t *dma_step(uint32_t ch) {
    l496_dma_ch_t *c = &l496_fake_dma2.CH[ch - 1u];
    uint32_t prog = fake.dma_prog[ch], left = c->CNDTR, off = prog - left;
    uint8_t *m = dma_mem(c->CMAR + ((c->CCR & DMA_CCR_MINC) ? off : 0u), 1u);
    c->CNDTR = --left;
    if (left == prog / 2u) dma_flag(ch, 4u); /* HTIF */
    if (left == 0u) {
        dma_flag(ch, 2u); /* TCIF */
        if (c->CCR & DMA_CCR_CIRC) c->CNDTR = prog;
    }
    return m;
}

/* LPUART1's kernel clock (RCC_CCIPR LPUART1SEL): PCLK1 (= HCLK here), SYSCLK, HSI16 (if on), LSE */
static uint32_t lpuart_fck(void) {
    switch ((l496_fake_rcc.CCIPR >> 10) & 3u) {
    case 0: return fake_hclk();
    case 1: return fake_sysclk();
    case 2: return (l496_fake_rcc.CR & RCC_CR_HSIRDY) ? 16000000u : 0u;
    default: return 32768u;
    }
}

uint32_t fake_wire_baud(void) {
    uint32_t brr = l496_fake_lpuart1.BRR;
    return brr ? (uint32_t)(256ull * lpuart_fck() / brr) : 0u;
}

static uint32_t pin_mode_af(const l496_gpio_t *g, uint32_t pin) {
    return FIELD2(g->MODER, pin) == GPIO_MODE_AF ? (g->AFR[pin / 8u] >> (4u * (pin % 8u))) & 0xFu : 99u;
}

/* a byte on the wire (TX from PG7 or RX into PG8): right pins, right rate? */
static int wire_ok(const char *what, uint32_t pin) {
    uint32_t baud = fake_wire_baud();
    int ok = 1;
    if (pin_mode_af(&l496_fake_gpiog, pin) != 8u || !(l496_fake_pwr.CR2 & PWR_CR2_IOSV)) {
        violation("LPUART1 %s byte with PG%u not in AF8 (or VDDIO2 off)", what, (unsigned)pin);
        ok = 0;
    }
    if (pin == 7u && (((l496_fake_gpiog.OTYPER >> 7) & 1u) || FIELD2(l496_fake_gpiog.OSPEEDR, 7u) != 2u))
        violation("LPUART1 TX: PG7 not push-pull at high speed");
    if (pin == 8u && FIELD2(l496_fake_gpiog.PUPDR, 8u) != 1u) violation("LPUART1 RX: PG8 without its pull-up");
    if (baud < L496_BAUD - L496_BAUD / 50u || baud > L496_BAUD + L496_BAUD / 50u) {
        violation("LPUART1 %s byte at %u baud (kernel clock %u, BRR %u): more than 2 %% from 921600", what,
                  (unsigned)baud, (unsigned)lpuart_fck(), (unsigned)l496_fake_lpuart1.BRR);
        ok = 0;
    }
    return ok;
}

static int uart_on(uint32_t bit) {
    uint32_t cr1 = l496_fake_lpuart1.CR1;
    return (cr1 & USART_CR1_UE) && (cr1 & bit) && (l496_fake_rcc.APB1ENR2 & RCC_APB1ENR2_LPUART1EN);
}

/* TX: the DMA fills TDR when it is empty, TDR goes to the shift register when that is empty */
static void tx_feed(void) {
    l496_usart_t *u = &l496_fake_lpuart1;
    if (!uart_on(USART_CR1_TE)) return;
    for (;;) {
        if (!fake.tdr_full && (u->CR3 & USART_CR3_DMAT) && dma_serves_lpuart(L496_LPUART_TX_CH) &&
            l496_fake_dma2.CH[L496_LPUART_TX_CH - 1u].CNDTR) {
            uint8_t *m = dma_step(L496_LPUART_TX_CH);
            fake.tdr = m ? *m : 0u;
            fake.tdr_full = 1;
            u->ISR &= ~USART_ISR_TC;
        }
        if (fake.shifting || !fake.tdr_full) return;
        fake.shifting = 1;
        fake.shift_byte = fake.tdr;
        fake.tdr_full = 0;
        fake.shift_left += 10ll * u->BRR; /* 10 bits, each BRR/256 kernel clock cycles (credit carried) */
        fake.shift_hclk = lpuart_fck();
    }
}

static void tx_run(uint64_t cycles) {
    if (!fake.shifting) return;
    fake.shift_left -= (int64_t)cycles * 256;
    while (fake.shifting && fake.shift_left <= 0) {
        fake.shifting = 0;
        if (wire_ok("TX", 7u)) {
            uint32_t baud = fake_wire_baud();
            if (fake.wire_n < FAKE_WIRE) fake.wire[fake.wire_n] = fake.shift_byte;
            if (!fake.wire_n++) fake.wire_first_ns = fake.synced_us * 1000u, fake.wire_baud_min = baud;
            fake.wire_last_ns = fake.synced_us * 1000u;
            if (baud < fake.wire_baud_min) fake.wire_baud_min = baud;
            if (baud > fake.wire_baud_max) fake.wire_baud_max = baud;
        }
        tx_feed();
        if (!fake.shifting && !fake.tdr_full) l496_fake_lpuart1.ISR |= USART_ISR_TC;
    }
    if (!fake.shifting) fake.shift_left = 0;
}

/* RX: the host's bytes that have arrived by now */
static void rx_run(void) {
    l496_usart_t *u = &l496_fake_lpuart1;
    uint64_t now_ns = fake.synced_us * 1000u;
    while (fake.hq_n && fake.burst_ns + BAUD_NS(fake.burst_k + 1u) <= now_ns) {
        uint8_t b = fake.hq[fake.hq_head];
        fake.hq_head = (fake.hq_head + 1u) % FAKE_HQ;
        fake.hq_n--;
        fake.idle_at_ns = fake.burst_ns + BAUD_NS(fake.burst_k + 2u);
        fake.burst_k++;
        if (!uart_on(USART_CR1_RE) || !wire_ok("RX", 8u)) {
            fake.rx_lost++;
            continue;
        }
        if ((u->CR3 & USART_CR3_DMAR) && dma_serves_lpuart(L496_LPUART_RX_CH)) {
            uint8_t *m = dma_step(L496_LPUART_RX_CH);
            if (m) *m = b;
            fake.rx_bytes++;
        } else {
            if (u->ISR & USART_ISR_RXNE) fake.rx_lost++;
            u->RDR = b;
            u->ISR |= USART_ISR_RXNE;
        }
    }
    if (fake.idle_at_ns && !fake.hq_n && now_ns >= fake.idle_at_ns) {
        fake.idle_at_ns = 0;
        if (uart_on(USART_CR1_RE)) u->ISR |= USART_ISR_IDLE;
    }
}

/* TIM2 counts `ticks`: compare matches, the overflow (ARR 0xFFFFFFFF) */
static void tim_count(uint64_t ticks) {
    l496_tim_t *t = &l496_fake_tim2;
    if (!ticks) return;
    uint32_t old = t->CNT;
    const uint32_t *ccr[3] = {(const uint32_t *)&t->CCR1, (const uint32_t *)&t->CCR2, (const uint32_t *)&t->CCR3};
    for (uint32_t k = 0; k < 3; k++)
        if (ticks > 0xFFFFFFFFull || (uint32_t)(*ccr[k] - old - 1u) < ticks) t->SR |= TIM_SR_CC1IF << k;
    if ((uint64_t)old + ticks > 0xFFFFFFFFull) {
        t->SR |= TIM_SR_UIF;
        fake.tim_psc = t->PSC; /* the preloaded prescaler takes effect at the update */
    }
    t->CNT = (uint32_t)(old + ticks);
}

/* microseconds until TIM2 next sets an interrupt flag that is enabled (ceiling), or `cap` */
static uint64_t tim_next_us(uint64_t cap, uint32_t hclk) {
    l496_tim_t *t = &l496_fake_tim2;
    if (!(t->CR1 & TIM_CR1_CEN) || !hclk) return cap;
    uint64_t ticks = 0x100000000ull - t->CNT; /* to the overflow */
    const uint32_t ccr[3] = {t->CCR1, t->CCR2, t->CCR3};
    for (uint32_t k = 0; k < 3; k++)
        if (t->DIER & (TIM_DIER_CC1IE << k)) {
            uint64_t d = (uint32_t)(ccr[k] - t->CNT);
            if (!d) d = 0x100000000ull;
            if (d < ticks) ticks = d;
        }
    uint64_t cyc = ticks * tim_div() - fake.tim_pc;
    uint64_t us = (cyc * 1000000u + hclk - 1u) / hclk;
    return us < cap ? (us ? us : 1u) : cap;
}

static int wire_busy(void) { return fake.shifting || fake.tdr_full || fake.hq_n || fake.idle_at_ns; }

static void step(uint64_t dt, uint32_t hclk) {
    fake.cyc_rem += dt * hclk;
    uint64_t cyc = fake.cyc_rem / 1000000u;
    fake.cyc_rem %= 1000000u;
    fake.synced_us += dt;
    if ((fake.demcr & (1u << 24)) && (fake.dwt_ctrl & 1u)) fake.dwt_cyccnt += (uint32_t)cyc;
    if (l496_fake_tim2.CR1 & TIM_CR1_CEN) {
        uint64_t total = fake.tim_pc + cyc;
        fake.tim_pc = (uint32_t)(total % tim_div());
        tim_count(total / tim_div());
    }
    tx_feed();
    tx_run(hclk ? cyc * lpuart_fck() / hclk : 0u); /* in LPUART kernel clock cycles */
    rx_run();
}

/* which interrupt lines are pending and enabled in the NVIC: bit 0 TIM2, 1 DMA2 ch6, 2 ch7, 3 LPUART1 */
static uint32_t irq_lines(void) {
    static const unsigned IRQ[4] = {L496_IRQ_TIM2, L496_IRQ_DMA2_CH6, L496_IRQ_DMA2_CH7, L496_IRQ_LPUART1};
    const l496_usart_t *u = &l496_fake_lpuart1;
    uint32_t ccr6 = l496_fake_dma2.CH[5].CCR, ccr7 = l496_fake_dma2.CH[6].CCR;
    uint32_t lvl[4] = {
        l496_fake_tim2.SR & l496_fake_tim2.DIER & 0xFu,
        dma_flags(6) & (ccr6 & (DMA_CCR_TCIE | DMA_CCR_HTIE | DMA_CCR_TEIE)),
        dma_flags(7) & (ccr7 & (DMA_CCR_TCIE | DMA_CCR_HTIE | DMA_CCR_TEIE)),
        ((u->ISR & USART_ISR_IDLE) && (u->CR1 & USART_CR1_IDLEIE)) || ((u->ISR & USART_ISR_TC) && (u->CR1 & USART_CR1_TCIE)) ||
            ((u->ISR & (USART_ISR_RXNE | USART_ISR_ORE)) && (u->CR1 & USART_CR1_RXNEIE)),
    };
    uint32_t m = 0;
    for (uint32_t k = 0; k < 4; k++)
        if (lvl[k] && ((fake.nvic[IRQ[k] / 32u] >> (IRQ[k] % 32u)) & 1u)) m |= 1u << k;
    return m;
}

static void take_interrupts(void) {
    static void (*const ISR[4])(void) = {l496_tim2_isr, l496_dma_tx_isr, l496_dma_rx_isr, l496_lpuart_isr};
    if (fake.primask || fake.in_isr) return;
    for (int n = 0;; n++) {
        uint32_t m = irq_lines();
        if (!m) return;
        if (n == 1000) {
            violation("an interrupt stays pending after its handler ran 1000 times (lines 0x%x)", (unsigned)m);
            return;
        }
        uint32_t k = (uint32_t)__builtin_ctz(m); /* lowest IRQ number first (equal priorities) */
        fake.in_isr = 1;
        fake.isr_calls[k]++;
        ISR[k]();
        fake.in_isr = 0;
    }
}

void fake_sync(void) {
    uint64_t target = fake.now_us;
    while (fake.synced_us < target) {
        uint32_t hclk = fake_hclk();
        if (hclk != fake.last_hclk) {
            if (fake.shifting)
                violation("HCLK changed from %u to %u Hz with an LPUART1 TX byte in flight", (unsigned)fake.last_hclk,
                          (unsigned)hclk);
            fake.last_hclk = hclk;
        }
        uint64_t left = target - fake.synced_us;
        uint64_t dt = wire_busy() ? 1u : tim_next_us(left, hclk);
        step(dt, hclk);
        if (!fake.primask && !fake.in_isr && irq_lines()) { /* the handlers run now, and take their time */
            uint64_t t = fake.synced_us;
            fake.now_us = t;
            take_interrupts();
            target += fake.now_us - t;
        }
    }
    if (fake.now_us < target) fake.now_us = target;
}

void fake_host_send(const uint8_t *b, uint32_t n) {
    fake_sync();
    if (!fake.hq_n) fake.burst_ns = fake.now_us * 1000u, fake.burst_k = 0;
    for (uint32_t k = 0; k < n && fake.hq_n < FAKE_HQ; k++) {
        fake.hq[(fake.hq_head + fake.hq_n) % FAKE_HQ] = b[k];
        fake.hq_n++;
    }
}

volatile uint32_t *l496_fake_core_reg(uintptr_t addr) {
    fake.now_us++;
    fake_sync();
    switch (addr) {
    case 0xE0001004u: return &fake.dwt_cyccnt;
    case 0xE0001000u: return &fake.dwt_ctrl;
    case 0xE000EDFCu: return &fake.demcr;
    case 0xE0042000u: return &fake.idcode;
    default: violation("core register 0x%08lx is not modelled", (unsigned long)addr); return &fake.core_other;
    }
}

void l496_fake_irq_enable(unsigned irq) {
    if (irq >= 96u) return violation("NVIC: IRQ %u does not exist", irq);
    fake.nvic[irq / 32u] |= 1u << (irq % 32u);
    take_interrupts();
}

uint32_t l496_fake_primask(int set, uint32_t value) {
    uint32_t old = fake.primask;
    if (set) fake.primask = value & 1u;
    take_interrupts();
    return old;
}

/* WFI: back at once if an enabled interrupt is pending (even with PRIMASK set); else time moves on to the
 * next event that makes one pending */
void l496_fake_wfi(void) {
    fake.wfis++;
    fake_sync();
    for (uint64_t slept = 0; !irq_lines(); ) {
        if (slept > 100000000000ull) return violation("WFI: nothing woke the CPU in 100000 s");
        uint64_t dt = wire_busy() ? 1u : tim_next_us(1000000000u, fake_hclk());
        fake.now_us += dt;
        slept += dt;
        uint32_t pm = fake.primask;
        fake.primask = 1; /* asleep: the interrupt is taken when the CPU runs again */
        fake_sync();
        fake.primask = pm;
    }
    take_interrupts();
}

/* fault.c's record (it holds ARM code): the harness sets reset_jmp, board_reset lands there */
cm4_noinit_t cm4_noinit;
uint8_t cm4_take_reset_cause(char *msg, unsigned cap) {
    uint8_t c = 0;
    msg[0] = 0;
    if (cm4_noinit.magic == CM4_NOINIT_MAGIC) {
        c = (uint8_t)cm4_noinit.cause;
        if (c == 3) snprintf(msg, cap, "reset after a fault at PC 0x%08lX", (unsigned long)cm4_noinit.pc);
    }
    cm4_noinit.magic = 0;
    return c;
}

void cm4_reset_with_cause(uint8_t c) {
    cm4_noinit.magic = CM4_NOINIT_MAGIC;
    cm4_noinit.cause = c;
    if (fake.shifting || fake.tdr_full) violation("reset with an LPUART1 TX byte in flight");
    if (fake.reset_jmp) longjmp(*(jmp_buf *)fake.reset_jmp, 1);
    fputs("cm4_reset_with_cause without a harness to return to\n", stderr);
    abort();
}

/* register writes of the board's peripherals: clocks on, the rules above */
static int board_wr(L496_REG *r, uint32_t v) {
    l496_rcc_t *rcc = &l496_fake_rcc;
    l496_tim_t *t = &l496_fake_tim2;
    l496_usart_t *u = &l496_fake_lpuart1;
    l496_dma_t *d = &l496_fake_dma2;
    if (r == &l496_fake_pwr.CR2) {
        if (!(rcc->APB1ENR1 & RCC_APB1ENR1_PWREN)) violation("PWR_CR2 written with the PWR clock off");
        *r = v;
        return 1;
    }
    if (IN(r, *t)) {
        if (!(rcc->APB1ENR1 & RCC_APB1ENR1_TIM2EN)) violation("TIM2 written with its clock off");
        if (r == &t->SR) {
            t->SR &= v; /* rc_w0 */
        } else if (r == &t->EGR) {
            if (v & TIM_EGR_UG) {
                t->CNT = 0;
                fake.tim_pc = 0;
                fake.tim_psc = t->PSC;
                if (!(t->CR1 & TIM_CR1_URS)) t->SR |= TIM_SR_UIF;
            }
        } else {
            if (r == &t->ARR && v != 0xFFFFFFFFu) violation("TIM2 ARR 0x%08x: the model counts to 0xFFFFFFFF", (unsigned)v);
            *r = v;
        }
        return 1;
    }
    if (IN(r, *u)) {
        if (!(rcc->APB1ENR2 & RCC_APB1ENR2_LPUART1EN)) violation("LPUART1 written with its clock off");
        if (r == &u->BRR) {
            if (u->CR1 & USART_CR1_UE) violation("LPUART1 BRR written while UE = 1");
            if (fake.shifting || fake.tdr_full) violation("LPUART1 BRR written with a TX byte in flight");
            if (v < 0x300u) violation("LPUART1 BRR 0x%x below 0x300", (unsigned)v);
            *r = v;
        } else if (r == &u->ICR) {
            u->ISR &= ~(v & (USART_ICR_IDLECF | USART_ICR_ORECF | USART_ICR_TCCF));
        } else if (r == &u->TDR) {
            fake.tdr = (uint8_t)v, fake.tdr_full = 1, u->ISR &= ~USART_ISR_TC;
        } else if (r != &u->ISR && r != &u->RDR) {
            *r = v;
            if (r == &u->CR1 && !(v & USART_CR1_UE)) { /* disabled: TX/RX state lost (RM0351: UE = 0 resets) */
                if (fake.shifting || fake.tdr_full) violation("LPUART1 disabled with a TX byte in flight");
                fake.shifting = fake.tdr_full = 0, fake.shift_left = 0;
                u->ISR = USART_ISR_TC;
            }
            tx_feed();
        }
        return 1;
    }
    if (IN(r, *d)) {
        if (!(rcc->AHB1ENR & RCC_AHB1ENR_DMA2EN)) violation("DMA2 written with its clock off");
        if (r == &d->IFCR) {
            for (uint32_t ch = 1; ch <= 7; ch++)
                if (v & (1u << (4u * (ch - 1u)))) v |= 0xFu << (4u * (ch - 1u)); /* CGIF clears all four */
            d->ISR &= ~v;
            return 1;
        }
        if (r == &d->ISR) return 1;
        for (uint32_t ch = 1; ch <= 7; ch++) {
            l496_dma_ch_t *c = &d->CH[ch - 1u];
            if ((r == &c->CPAR || r == &c->CMAR || r == &c->CNDTR) && (c->CCR & DMA_CCR_EN))
                violation("DMA2 channel %u: %s written while the channel is enabled", (unsigned)ch,
                          r == &c->CPAR ? "CPAR" : r == &c->CMAR ? "CMAR" : "CNDTR");
            if (r == &c->CNDTR) fake.dma_prog[ch] = v & 0xFFFFu;
            if (r == &c->CCR && (v & DMA_CCR_EN) && !(c->CCR & DMA_CCR_EN)) {
                uint32_t want = ch == L496_LPUART_TX_CH ? (uint32_t)(uintptr_t)&u->TDR : (uint32_t)(uintptr_t)&u->RDR;
                if ((ch == L496_LPUART_TX_CH || ch == L496_LPUART_RX_CH) && c->CPAR != want)
                    violation("DMA2 channel %u enabled with CPAR not LPUART1's %s", (unsigned)ch,
                              ch == L496_LPUART_TX_CH ? "TDR" : "RDR");
                if (ch == L496_LPUART_TX_CH && !(v & DMA_CCR_DIR)) violation("DMA2 channel 6 enabled reading the TDR");
                if (c->CNDTR) (void)dma_mem(c->CMAR, c->CNDTR); /* the whole buffer in RAM */
            }
        }
        *r = v;
        if (r == &d->CH[L496_LPUART_TX_CH - 1u].CCR) tx_feed();
        return 1;
    }
    if (IN(r, l496_fake_gpiog)) {
        if (!(l496_fake_pwr.CR2 & PWR_CR2_IOSV)) violation("GPIOG written before PWR_CR2.IOSV (VDDIO2 not valid)");
        if (!(rcc->AHB2ENR & RCC_AHB2ENR_GPIOGEN)) violation("GPIOG written with its clock off");
        if (r == &l496_fake_gpiog.BSRR) l496_fake_gpiog.ODR = (l496_fake_gpiog.ODR | (v & 0xFFFFu)) & ~(v >> 16);
        else *r = v;
        return 1;
    }
    if (IN(r, l496_fake_gpiof)) {
        l496_gpio_t *g = &l496_fake_gpiof;
        if (!(rcc->AHB2ENR & RCC_AHB2ENR_GPIOFEN)) violation("GPIOF written with its clock off");
        if (r == &g->BSRR) g->ODR = (g->ODR | (v & 0xFFFFu)) & ~(v >> 16);
        else *r = v;
        uint32_t lvl = FIELD2(g->MODER, 13u) == GPIO_MODE_OUT ? (g->ODR >> 13) & 1u : 0u;
        if (lvl != fake.pf13) {
            fake.pf13 = lvl;
            if (fake.edge_n < FAKE_EDGES) fake.edge_us[fake.edge_n] = fake.now_us, fake.edge_level[fake.edge_n] = (uint8_t)lvl;
            fake.edge_n++;
        }
        return 1;
    }
    return 0;
}

static int board_rd(L496_REG *r, uint32_t *v) {
    if (r == &l496_fake_lpuart1.ISR) {
        *v = l496_fake_lpuart1.ISR | (fake.tdr_full ? 0u : USART_ISR_TXE);
        return 1;
    }
    if (r == &l496_fake_lpuart1.RDR) {
        l496_fake_lpuart1.ISR &= ~USART_ISR_RXNE;
        *v = l496_fake_lpuart1.RDR;
        return 1;
    }
    if (r == &l496_fake_tim2.EGR) {
        *v = 0;
        return 1;
    }
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------------- */
static void access_jump(void) {
    if (fake.acc_jump_at && --fake.acc_jump_at == 0) fake.now_us += fake.acc_jump_us;
}

uint32_t l496_rd(L496_REG *r) {
    access_jump();
    if (!fake.rd_free) fake.now_us++;
    fake_sync();
    uint32_t bv;
    if (board_rd(r, &bv)) return bv;
    if (r == &l496_fake_rcc.CR) return r_rcc_cr();
    if (r == &l496_fake_pwr.SR2) return r_pwr_sr2();
    if (r == &l496_fake_flash.ACR) return r_flash_acr();
    if (r == &l496_fake_i2c1.RXDR) return r_i2c_rxdr();
    if (r == &l496_fake_i2c1.ISR) {
        uint32_t v = l496_fake_i2c1.ISR | (bus.busy ? I2C_ISR_BUSY : 0u);
        if (fake.now_us < fake.stretch_until) v &= ~(I2C_ISR_TXIS | I2C_ISR_RXNE | I2C_ISR_TC | I2C_ISR_STOPF);
        return v;
    }
    if (r == &l496_fake_gpiob.IDR) return r_gpiob_idr();
    if (r == &l496_fake_scratch) return fake.now_us >= fake.scratch_ready_at ? 1u : 0u;
    return *r;
}

void l496_wr(L496_REG *r, uint32_t v) {
    l496_i2c_t *i = &l496_fake_i2c1;
    access_jump();
    fake_sync();
    if (board_wr(r, v)) return;
    if (r == &l496_fake_rcc.CR) return w_rcc_cr(v);
    if (r == &l496_fake_rcc.CFGR) return w_rcc_cfgr(v);
    if (r == &l496_fake_rcc.PLLCFGR) return w_rcc_pllcfgr(v);
    if (r == &l496_fake_pwr.CR1) return w_pwr_cr1(v);
    if (r == &l496_fake_flash.ACR) return w_flash_acr(v);
    if (r == &i->CR1) return w_i2c_cr1(v);
    if (r == &i->CR2) return w_i2c_cr2(v);
    if (r == &i->TXDR) return w_i2c_txdr(v);
    if (r == &i->TIMINGR) {
        if (i->CR1 & I2C_CR1_PE) violation("I2C1 TIMINGR written while PE = 1");
        i->TIMINGR = v;
        return;
    }
    if (r == &i->ICR) {
        uint32_t clr = v & (I2C_ICR_NACKCF | I2C_ICR_STOPCF | I2C_ICR_BERRCF | I2C_ICR_ARLOCF);
        i->ISR &= ~clr;
        return;
    }
    if (r == &i->ISR) return; /* TXE flush: nothing buffered in the model */
    if (r == &l496_fake_gpiob.BSRR) return w_gpiob_bsrr(v);
    *r = v;
}

void fake_reset(int i2c_mode) {
    memset(&l496_fake_rcc, 0, sizeof l496_fake_rcc);
    memset(&l496_fake_pwr, 0, sizeof l496_fake_pwr);
    memset(&l496_fake_flash, 0, sizeof l496_fake_flash);
    memset(&l496_fake_i2c1, 0, sizeof l496_fake_i2c1);
    memset(&l496_fake_gpiob, 0, sizeof l496_fake_gpiob);
    memset(&bus, 0, sizeof bus);
    memset(&l496_fake_tim2, 0, sizeof l496_fake_tim2);
    memset(&l496_fake_lpuart1, 0, sizeof l496_fake_lpuart1);
    memset(&l496_fake_dma2, 0, sizeof l496_fake_dma2);
    memset(&l496_fake_gpiof, 0, sizeof l496_fake_gpiof);
    memset(&l496_fake_gpiog, 0, sizeof l496_fake_gpiog);
    uint64_t now = fake.now_us;
    unsigned stuck = fake.stuck;
    memset(&fake, 0, sizeof fake);
    fake.now_us = fake.synced_us = now;
    fake.stuck = stuck;
    /* the board's part: LPUART1 idle (TC), the STM32L496's DBGMCU IDCODE (DEV_ID 0x461, REV_ID 0x1000 as in
     * board_l496.c's defaults) and a 1 MiB flash-size word */
    l496_fake_lpuart1.ISR = USART_ISR_TC;
    l496_fake_gpiof.MODER = l496_fake_gpiog.MODER = 0xFFFFFFFFu; /* RM0351: ports C..I reset to analog mode */
    fake.idcode = 0x10000461u;
    l496_fake_flashsize = 1024u;
    /* reset state (RM0351 reset values as used here): MSI on and ready, range from MSISRANGE = 6 (4 MHz),
     * Range 1, 0 wait states, SYSCLK = MSI */
    l496_fake_rcc.CR = RCC_CR_MSION | RCC_CR_MSIRDY;
    l496_fake_rcc.CSR = 6u << 8;
    l496_fake_pwr.CR1 = 1u << 9;
    /* GPIOB: PB8/PB9 as out of reset (RM0351: analog mode, no pull, low speed, push-pull, AF0); the other pins
     * as the rest of the board set them (the LEDs PB7/PB14 outputs) or in some other driver's configuration
     * (PB10..PB15: AF7, open drain, pull-down, high speed), which the I2C code must leave as it is */
    l496_fake_gpiob.MODER = (0xFFFFFEBFu & ~((3u << 14) | (3u << 28))) | (1u << 14) | (1u << 28);
    l496_fake_gpiob.OTYPER = 0xFC00u;
    l496_fake_gpiob.OSPEEDR = 0x000000C0u | 0xAAAu << 20;
    l496_fake_gpiob.PUPDR = 0x00000100u | 0xAAAu << 20;
    l496_fake_gpiob.AFR[1] = 0x77777700u;
    fake.gpiob_at_reset = l496_fake_gpiob;
    fake.min_scl_low_us = fake.min_scl_high_us = fake.min_stop_setup_us = FAKE_FOREVER;
    l496_fake_i2c1.ISR = I2C_ISR_TXE;
    fake.i2c_mode = i2c_mode;
    fake.lsm[0x0F] = 0x6C;
    fake.lsm[0x12] = 0x04;
}

void fake_fifo_push(const uint8_t w[7]) {
    if (fake.fifo_n == FAKE_FIFO) { /* continuous mode: the oldest word is overwritten */
        fake.fifo_head = (fake.fifo_head + 1u) % FAKE_FIFO;
        fake.fifo_n--;
        fake.fifo_overrun = 1;
    }
    memcpy(fake.fifo[(fake.fifo_head + fake.fifo_n) % FAKE_FIFO], w, 7);
    fake.fifo_n++;
}
