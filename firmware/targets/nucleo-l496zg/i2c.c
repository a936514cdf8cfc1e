/*
 * I2C1 master on PB8 (SCL, Arduino D15) / PB9 (SDA, D14), AF4, open drain (reference §1, §2.5).
 *
 * Kernel clock: HSI16, switched on only while the accelerometer is in use (probe, streaming), so the bus
 * timing is one fixed Fast-mode TIMINGR whatever SYSCLK is (at 4..8 MHz a PCLK1-clocked I2C cannot meet
 * Fast-mode's 0.9 us data-valid limit), and training rounds, which never stream, do not pay for HSI16.
 * Every wait is bounded (L496_I2C_TIMEOUT_US): a missing shield answers NACK, a dead bus times out; the
 * caller gets an error, never a hang.
 */
#include "hw.h"

#define RCC_CR_HSION (1u << 8)  /* [CMSIS] */
#define RCC_CR_HSIRDY (1u << 10)
#define RCC_CCIPR_I2C1SEL_HSI (2u << 12)
#define PB_SCL 8u
#define PB_SDA 9u

static uint32_t timingr;

static void delay_us(uint32_t us) {
    uint32_t t0 = l496_now_us();
    while (l496_now_us() - t0 < us) {
    }
}

static void pins_gpio_od(void) {
    l496_gpio_t *g = L_GPIOB;
    SETB(g->OTYPER, (1u << PB_SCL) | (1u << PB_SDA));
    SETB(g->BSRR, (1u << PB_SCL) | (1u << PB_SDA)); /* released (high through the pull-ups) */
    MODIFY(g->MODER, (3u << 2 * PB_SCL) | (3u << 2 * PB_SDA),
           (GPIO_MODE_OUT << 2 * PB_SCL) | (GPIO_MODE_OUT << 2 * PB_SDA));
}

static void pins_af(void) {
    l496_gpio_t *g = L_GPIOB;
    MODIFY(g->AFR[1], (0xFu << 4 * (PB_SCL - 8u)) | (0xFu << 4 * (PB_SDA - 8u)),
           (4u << 4 * (PB_SCL - 8u)) | (4u << 4 * (PB_SDA - 8u)));
    MODIFY(g->MODER, (3u << 2 * PB_SCL) | (3u << 2 * PB_SDA),
           (GPIO_MODE_AF << 2 * PB_SCL) | (GPIO_MODE_AF << 2 * PB_SDA));
}

/* A slave left holding SDA low (reset mid-transfer): clock SCL until it lets go, then a STOP (UM10204
 * §3.1.16 bus clear). */
static void bus_clear(void) {
    l496_gpio_t *g = L_GPIOB;
    pins_gpio_od();
    for (int i = 0; i < 9 && !(RD(g->IDR) & (1u << PB_SDA)); i++) {
        WR(g->BSRR, 1u << (PB_SCL + 16u));
        delay_us(5);
        WR(g->BSRR, 1u << PB_SCL);
        delay_us(5);
    }
    WR(g->BSRR, 1u << (PB_SDA + 16u)); /* STOP: SDA low -> high while SCL is high */
    delay_us(5);
    WR(g->BSRR, 1u << PB_SDA);
    delay_us(5);
    pins_af();
}

void l496_i2c_init(void) {
    l496_rcc_t *r = L_RCC;
    l496_gpio_t *g = L_GPIOB;
    RCC_ENABLE(r->AHB2ENR, RCC_AHB2ENR_GPIOBEN);
    RCC_ENABLE(r->APB1ENR1, RCC_APB1ENR1_I2C1EN);
    MODIFY(r->CCIPR, RCC_CCIPR_I2C1SEL_MSK, RCC_CCIPR_I2C1SEL_HSI);
    /* the shield's pull-ups do the work; the weak internal ones keep a missing shield's bus idle */
    MODIFY(g->PUPDR, (3u << 2 * PB_SCL) | (3u << 2 * PB_SDA), (1u << 2 * PB_SCL) | (1u << 2 * PB_SDA));
    SETB(g->OSPEEDR, (1u << 2 * PB_SCL) | (1u << 2 * PB_SDA)); /* medium speed */
    SETB(g->OTYPER, (1u << PB_SCL) | (1u << PB_SDA));
    pins_af();
    timingr = l496_i2c_timingr(16000000u, L496_I2C_RISE_NS, L496_I2C_FALL_NS);
}

uint32_t l496_i2c_timing_in_use(void) { return timingr; }

int l496_i2c_enable(int on) {
    l496_rcc_t *r = L_RCC;
    l496_i2c_t *i = L_I2C1;
    if (!on) {
        CLRB(i->CR1, I2C_CR1_PE);
        CLRB(r->CR, RCC_CR_HSION);
        return 0;
    }
    SETB(r->CR, RCC_CR_HSION);
    if (l496_wait(&r->CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY, 1000u)) return -2;
    CLRB(i->CR1, I2C_CR1_PE);
    WR(i->TIMINGR, timingr); /* written while PE = 0 */
    if (!(RD(L_GPIOB->IDR) & (1u << PB_SDA))) bus_clear(); /* before the peripheral owns the bus */
    SETB(i->CR1, I2C_CR1_PE); /* analog filter on (ANFOFF = 0), no digital filter */
    return 0;
}

/* Software reset of the peripheral after an error: PE low, read back (RM0351: PE must stay low for three
 * APB cycles), high again. */
static int reset_bus(void) {
    l496_i2c_t *i = L_I2C1;
    CLRB(i->CR1, I2C_CR1_PE);
    (void)l496_wait(&i->CR1, I2C_CR1_PE, 0, 10u);
    SETB(i->CR1, I2C_CR1_PE);
    return -2;
}

/* 0 when `flag` is set; -1 NACK; -2 bus error, arbitration lost or timeout. */
static int wait_flag(uint32_t flag) {
    l496_i2c_t *i = L_I2C1;
    uint32_t t0 = l496_now_us();
    for (;;) {
        uint32_t isr = RD(i->ISR);
        if (isr & I2C_ISR_NACKF) return -1;
        if (isr & (I2C_ISR_BERR | I2C_ISR_ARLO)) return -2;
        if (isr & flag) return 0;
        if (l496_now_us() - t0 >= L496_I2C_TIMEOUT_US) return -2;
    }
}

int l496_i2c_xfer(uint8_t addr7, const uint8_t *w, size_t nw, uint8_t *r, size_t nr) {
    l496_i2c_t *i = L_I2C1;
    int rc = 0;
    if (nw > 255u || nr > 255u || (!nw && !nr)) return -2;
    if (!(RD(i->CR1) & I2C_CR1_PE)) return -2;
    if (l496_wait(&i->ISR, I2C_ISR_BUSY, 0, L496_I2C_TIMEOUT_US)) return reset_bus();
    uint32_t sadd = (uint32_t)addr7 << 1;
    if (nw) {
        WR(i->CR2, sadd | ((uint32_t)nw << I2C_CR2_NBYTES_POS) | I2C_CR2_START | (nr ? 0u : I2C_CR2_AUTOEND));
        for (size_t k = 0; k < nw; k++) {
            if ((rc = wait_flag(I2C_ISR_TXIS))) goto fail;
            WR(i->TXDR, w[k]);
        }
        if (nr && (rc = wait_flag(I2C_ISR_TC))) goto fail;
    }
    if (nr) { /* repeated START, read, automatic STOP */
        WR(i->CR2, sadd | I2C_CR2_RD_WRN | ((uint32_t)nr << I2C_CR2_NBYTES_POS) | I2C_CR2_START | I2C_CR2_AUTOEND);
        for (size_t k = 0; k < nr; k++) {
            if ((rc = wait_flag(I2C_ISR_RXNE))) goto fail;
            r[k] = (uint8_t)RD(i->RXDR);
        }
    }
    if ((rc = wait_flag(I2C_ISR_STOPF))) goto fail;
    WR(i->ICR, I2C_ICR_STOPCF);
    return 0;
fail:
    if (rc == -1) { /* NACK: the master sends a STOP by itself (HAL I2C_IsErrorOccurred waits for it and only
                     * writes STOP if the bus stays busy); then clear the flags and flush TXDR */
        if (l496_wait(&i->ISR, I2C_ISR_STOPF, I2C_ISR_STOPF, L496_I2C_TIMEOUT_US) && (RD(i->ISR) & I2C_ISR_BUSY)) {
            SETB(i->CR2, I2C_CR2_STOP);
            if (l496_wait(&i->ISR, I2C_ISR_STOPF, I2C_ISR_STOPF, L496_I2C_TIMEOUT_US)) return reset_bus();
        }
        WR(i->ICR, I2C_ICR_NACKCF | I2C_ICR_STOPCF);
        WR(i->ISR, I2C_ISR_TXE);
        return -1;
    }
    WR(i->ICR, I2C_ICR_BERRCF | I2C_ICR_ARLOCF | I2C_ICR_NACKCF | I2C_ICR_STOPCF);
    return reset_bus();
}
