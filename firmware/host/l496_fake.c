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
 *     after a long interrupt).
 * The other peripherals are plain memory.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

uint32_t l496_now_us(void) {
    if (fake.jump_countdown && --fake.jump_countdown == 0) fake.now_us += fake.jump_us;
    return (uint32_t)++fake.now_us;
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

/* ---- dispatch ------------------------------------------------------------------------------------- */
uint32_t l496_rd(L496_REG *r) {
    fake.now_us++;
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
    uint64_t now = fake.now_us;
    unsigned stuck = fake.stuck;
    memset(&fake, 0, sizeof fake);
    fake.now_us = now;
    fake.stuck = stuck;
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
