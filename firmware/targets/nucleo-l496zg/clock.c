/*
 * The SYSCLK switch of the STM32L496 as a register sequence (RM0351 "Reset and clock control", "Power
 * control"; orderings as ST's HAL does them: HAL_RCC_OscConfig / HAL_RCC_ClockConfig /
 * HAL_PWREx_ControlVoltageScaling).  The sequence is written so that at every single register write the
 * chip is inside its rules; host/l496_fake.c replays it against a model of the clock tree and checks that
 * after each write:
 *   - HCLK and SYSCLK do not exceed what the voltage range allows (Range 1: 80 MHz, Range 2: 26 MHz, and
 *     not while VOSF still shows a rise to Range 1 settling),
 *   - the flash latency in force (read back) covers HCLK in the current range,
 *   - the PLL is configured only while off, selected only once locked, stopped only once deselected,
 *     and its VCO stays in 64..344 MHz (<= 128 MHz in Range 2).
 *
 * The path every switch takes: Range 1, 4 wait states (safe for anything up to 80 MHz), SYSCLK on the MSI,
 * PLL off; then the new MSI range or the PLL (from MSI 4 MHz), the AHB prescaler; then the target's wait
 * states and, last, Range 2 if the target allows it.
 */
#include "hw.h"

#define T_VOS_US 5000u  /* VOSF settles in tens of us (datasheet); generous */
#define T_OSC_US 10000u /* MSI/PLL ready, switch status */

int l496_wait(L496_REG *reg, uint32_t mask, uint32_t want, uint32_t timeout_us) {
    uint32_t t0 = l496_now_us();
    for (;;) {
        if ((RD(*reg) & mask) == want) return 0;
        if (l496_now_us() - t0 >= timeout_us) return (RD(*reg) & mask) == want ? 0 : -1;
    }
}

static int set_latency(uint32_t ws) {
    l496_flash_t *f = L_FLASH;
    MODIFY(f->ACR, FLASH_ACR_LATENCY_MSK, ws | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN);
    return l496_wait(&f->ACR, FLASH_ACR_LATENCY_MSK, ws, T_OSC_US); /* in force once it reads back */
}

static int set_msi_range(uint8_t range) {
    l496_rcc_t *r = L_RCC;
    if (l496_wait(&r->CR, RCC_CR_MSIRDY, RCC_CR_MSIRDY, T_OSC_US)) return -1; /* change only when ready */
    MODIFY(r->CR, RCC_CR_MSIRANGE_MSK, RCC_CR_MSIRGSEL | ((uint32_t)range << RCC_CR_MSIRANGE_POS));
    return l496_wait(&r->CR, RCC_CR_MSIRDY, RCC_CR_MSIRDY, T_OSC_US);
}

static int select_sysclk(uint32_t sw) {
    l496_rcc_t *r = L_RCC;
    MODIFY(r->CFGR, RCC_CFGR_SW_MSK, sw);
    return l496_wait(&r->CFGR, RCC_CFGR_SWS_MSK, sw << RCC_CFGR_SWS_POS, T_OSC_US);
}

int l496_clock_apply(const l496_clock_plan_t *p) {
    l496_rcc_t *r = L_RCC;
    l496_pwr_t *pw = L_PWR;
    RCC_ENABLE(r->APB1ENR1, RCC_APB1ENR1_PWREN);
    /* 1. Range 1 (allows everything up to 80 MHz); wait until the regulator has settled */
    if ((RD(pw->CR1) & PWR_CR1_VOS_MSK) != (1u << PWR_CR1_VOS_POS)) {
        MODIFY(pw->CR1, PWR_CR1_VOS_MSK, 1u << PWR_CR1_VOS_POS);
        if (l496_wait(&pw->SR2, PWR_SR2_VOSF, 0, T_VOS_US)) return -1;
    }
    /* 2. 4 wait states cover any HCLK in Range 1 */
    if (set_latency(4)) return -1;
    /* 3. SYSCLK back on the MSI (the PLL's input, at 4 MHz while the PLL runs), PLL off */
    if ((RD(r->CFGR) & RCC_CFGR_SWS_MSK) != (RCC_CFGR_SW_MSI << RCC_CFGR_SWS_POS)) {
        if (select_sysclk(RCC_CFGR_SW_MSI)) return -1;
    }
    if (RD(r->CR) & (RCC_CR_PLLON | RCC_CR_PLLRDY)) {
        CLRB(r->CR, RCC_CR_PLLON);
        if (l496_wait(&r->CR, RCC_CR_PLLRDY, 0, T_OSC_US)) return -1;
    }
    /* APB1/APB2 undivided: PCLK1 = HCLK feeds LPUART1 and TIM2 (whose clock is then PCLK1, not 2x) */
    MODIFY(r->CFGR, RCC_CFGR_PPRE1_MSK | RCC_CFGR_PPRE2_MSK, 0);
    /* 4. the new source */
    int err = 0;
    if (!p->use_pll) {
        err = set_msi_range(p->msirange);
        MODIFY(r->CFGR, RCC_CFGR_HPRE_MSK, l496_hpre_bits(p->hpre_div));
    } else {
        err = set_msi_range(6);
        if (!err) {
            WR(r->PLLCFGR, l496_pllcfgr(p));
            SETB(r->CR, RCC_CR_PLLON);
            err = l496_wait(&r->CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY, T_OSC_US);
            if (!err) {
                MODIFY(r->CFGR, RCC_CFGR_HPRE_MSK, l496_hpre_bits(p->hpre_div));
                err = select_sysclk(RCC_CFGR_SW_PLL);
            } else {
                CLRB(r->CR, RCC_CR_PLLON); /* it never locked: stay on the MSI */
                (void)l496_wait(&r->CR, RCC_CR_PLLRDY, 0, T_OSC_US);
            }
        }
    }
    if (err) return -1; /* still Range 1 / 4 WS, on the MSI: safe; the caller restores a known clock */
    /* 5. the target's wait states (computed for its range: never fewer than Range 1 needs), then its range */
    if (set_latency(p->latency)) return -1;
    if (p->vos == 2u) MODIFY(pw->CR1, PWR_CR1_VOS_MSK, 2u << PWR_CR1_VOS_POS);
    return 0;
}

/* HCLK from the registers: which source SWS shows, the MSI range in force, PLL factors, AHB prescaler. */
uint32_t l496_clock_hclk(void) {
    l496_rcc_t *r = L_RCC;
    uint32_t cr = RD(r->CR), cfgr = RD(r->CFGR);
    uint8_t range = (cr & RCC_CR_MSIRGSEL) ? (uint8_t)((cr & RCC_CR_MSIRANGE_MSK) >> RCC_CR_MSIRANGE_POS)
                                           : (uint8_t)((RD(r->CSR) >> 8) & 0xFu); /* MSISRANGE after reset */
    uint32_t msi = l496_msi_hz(range), sys = msi;
    if (((cfgr & RCC_CFGR_SWS_MSK) >> RCC_CFGR_SWS_POS) == RCC_CFGR_SW_PLL) {
        uint32_t pll = RD(r->PLLCFGR);
        uint32_t m = ((pll >> RCC_PLLCFGR_M_POS) & 7u) + 1u, n = (pll >> RCC_PLLCFGR_N_POS) & 0x7Fu;
        uint32_t rdiv = (((pll >> RCC_PLLCFGR_R_POS) & 3u) + 1u) * 2u;
        sys = (uint32_t)((uint64_t)msi / m * n / rdiv);
    }
    return sys / l496_ahb_div((cfgr & RCC_CFGR_HPRE_MSK) >> RCC_CFGR_HPRE_POS);
}
