/*
 * Pure arithmetic of the NUCLEO-L496ZG board support (no register access): compiled into the firmware
 * and into the host test program host/l496_main.c, whose results tests/device/test_firmware_l496.py checks
 * against the reference tables and against independent Python re-derivations.
 */
#include "hw.h"

/* MSI ranges 0..11 (RCC_CR.MSIRANGE): 100 k, 200 k, 400 k, 800 k, 1, 2, 4, 8, 16, 24, 32, 48 MHz
 * (ST HAL stm32l4xx_hal_rcc.h RCC_MSIRANGE_x; reference §2.2). */
static const uint32_t MSI_HZ[12] = {100000u,  200000u,  400000u,  800000u,  1000000u,  2000000u,
                                    4000000u, 8000000u, 16000000u, 24000000u, 32000000u, 48000000u};

uint32_t l496_msi_hz(uint8_t range) { return range < 12u ? MSI_HZ[range] : 0u; }

/* Flash wait states by HCLK: ST HAL stm32l4xx_ll_utils.c UTILS_SCALE1/2_LATENCYn_FREQ for STM32L4
 * (not L4+); reference §2.2. */
int l496_flash_latency(uint32_t hclk, uint8_t vos) {
    static const uint32_t R1[5] = {16000000u, 32000000u, 48000000u, 64000000u, 80000000u};
    static const uint32_t R2[4] = {6000000u, 12000000u, 18000000u, 26000000u};
    const uint32_t *t = vos == 1u ? R1 : R2;
    int n = vos == 1u ? 5 : 4;
    for (int i = 0; i < n; i++)
        if (hclk <= t[i]) return i;
    return -1;
}

#define PLL_IN_HZ 4000000u         /* MSI range 6, PLLM = 1: VCO input 4 MHz (allowed 4..16 MHz) */
#define VCO_MIN 64000000u          /* ST HAL ll_utils: PLL VCO output 64..344 MHz */
#define VCO_MAX 344000000u
#define VCO_MAX_RANGE2 128000000u  /* datasheet PLL characteristics, Range 2 [unverified] */
#define RANGE2_MAX_HZ 26000000u    /* HAL ll_utils UTILS_MAX_FREQUENCY_SCALE2 */

/* PLL R output = g: the valid (N, R) with the lowest VCO (lowest current); 0 if none. */
static int pll_for(uint32_t g, l496_clock_plan_t *p) {
    static const uint8_t RS[4] = {2, 4, 6, 8};
    for (int i = 0; i < 4; i++) {
        uint64_t vco = (uint64_t)g * RS[i];
        if (vco % PLL_IN_HZ) continue;
        uint32_t n = (uint32_t)(vco / PLL_IN_HZ);
        if (n < 8u || n > 86u || vco < VCO_MIN || vco > VCO_MAX) continue;
        p->use_pll = 1, p->msirange = 6, p->pllm = 1, p->plln = (uint8_t)n, p->pllr = RS[i];
        return 1;
    }
    return 0;
}

static int finish_plan(l496_clock_plan_t *p, uint32_t hclk, uint32_t sysclk, uint16_t div) {
    p->hclk = hclk;
    p->sysclk = sysclk;
    p->hpre_div = div;
    uint32_t vco = p->use_pll ? PLL_IN_HZ * p->plln : 0u;
    p->vos = (sysclk <= RANGE2_MAX_HZ && vco <= VCO_MAX_RANGE2) ? 2u : 1u;
    int lat = l496_flash_latency(hclk, p->vos);
    if (lat < 0) return -1;
    p->latency = (uint8_t)lat;
    return 0;
}

/* Cheapest source first: MSI undivided, the PLL undivided, MSI through the AHB prescaler, the PLL at
 * twice the frequency through AHB/2 (5, 7 MHz: below the PLL's 8 MHz minimum output). */
int l496_clock_plan(uint32_t hclk, l496_clock_plan_t *p) {
    *p = (l496_clock_plan_t){0};
    if (hclk < 4000000u || hclk > 80000000u || hclk % 1000000u) return -1;
    for (uint8_t r = 6; r < 12; r++)
        if (MSI_HZ[r] == hclk) {
            p->msirange = r;
            return finish_plan(p, hclk, hclk, 1);
        }
    if (pll_for(hclk, p)) return finish_plan(p, hclk, hclk, 1);
    static const uint16_t DIVS[3] = {2, 4, 8};
    for (int d = 0; d < 3; d++)
        for (uint8_t r = 6; r < 12; r++)
            if (MSI_HZ[r] == hclk * DIVS[d]) {
                *p = (l496_clock_plan_t){0};
                p->msirange = r;
                return finish_plan(p, hclk, MSI_HZ[r], DIVS[d]);
            }
    if (pll_for(2u * hclk, p)) return finish_plan(p, hclk, 2u * hclk, 2);
    return -1;
}

uint32_t l496_pllcfgr(const l496_clock_plan_t *p) {
    return RCC_PLLCFGR_SRC_MSI | ((uint32_t)(p->pllm - 1u) << RCC_PLLCFGR_M_POS) |
           ((uint32_t)p->plln << RCC_PLLCFGR_N_POS) | RCC_PLLCFGR_REN |
           ((uint32_t)(p->pllr / 2u - 1u) << RCC_PLLCFGR_R_POS);
}

/* HPRE: 0xxx = /1, 1000 = /2, 1001 = /4, 1010 = /8, 1011 = /16 ([CMSIS] RCC_CFGR_HPRE_DIVn) */
uint32_t l496_hpre_bits(uint16_t div) {
    uint32_t code = div == 2u ? 0x8u : div == 4u ? 0x9u : div == 8u ? 0xAu : div == 16u ? 0xBu : 0u;
    return code << RCC_CFGR_HPRE_POS;
}

/* HPRE code -> AHB divider: 0xxx = 1, 1000..1111 = 2, 4, 8, 16, 64, 128, 256, 512 (RM0351 RCC_CFGR; there is
 * no /32) */
uint32_t l496_ahb_div(uint32_t hpre) {
    static const uint16_t DIV[8] = {2, 4, 8, 16, 64, 128, 256, 512};
    return hpre < 8u ? 1u : DIV[hpre & 7u];
}

/* LPUART: BRR = round(256 * fck / baud), legal for 0x300..0xFFFFF and 3*baud <= fck <= 4096*baud
 * (ST HAL stm32l4xx_hal_uart.c UART_DIV_LPUART, LPUART_BRR_MIN/MAX; reference §2.6). */
uint32_t l496_lpuart_brr(uint32_t fck, uint32_t baud) {
    if (!baud || (uint64_t)fck < 3ull * baud || (uint64_t)fck > 4096ull * baud) return 0;
    uint64_t brr = ((uint64_t)fck * 256u + baud / 2u) / baud;
    return (brr < 0x300u || brr > 0xFFFFFu) ? 0u : (uint32_t)brr;
}

/* TIM2 counts at ftim / (PSC + 1) (APB1 prescaler 1, so ftim = PCLK1 = HCLK). */
uint32_t l496_tim2_psc(uint32_t ftim) { return ftim >= 1000000u ? (ftim + 500000u) / 1000000u - 1u : 0u; }

/* ---- I2C timing -------------------------------------------------------------------------------------
 * The I2C v2 timing model (RM0351 "I2C timings"; the same formulas as ST's CubeMX timing tool):
 *   tPRESC = (PRESC+1) tI2CCLK, tSCLL = (SCLL+1) tPRESC, tSCLH = (SCLH+1) tPRESC,
 *   tSCLDEL = (SCLDEL+1) tPRESC >= tr + tSU;DAT(min)                     (data set-up)
 *   tSDADEL = SDADEL tPRESC, in [tf + tHD;DAT(min) - tAF(min) - 3 tI2CCLK,
 *                                tVD;DAT(max) - tr - tAF(max) - 4 tI2CCLK]  (data hold, DNF = 0)
 *   the SCL period adds tSYNC1 + tSYNC2 >= 2 (tAF(min) + 2 tI2CCLK) to tSCLL + tSCLH.
 * Analog filter tAF 50..260 ns (STM32L496 datasheet [unverified]).  Fast-mode: tLOW >= 1.3 us,
 * tHIGH >= 0.6 us, tSU;DAT >= 100 ns, tVD;DAT <= 0.9 us, f <= 400 kHz; Standard-mode: 4.7 / 4.0 us,
 * 250 ns, 3.45 us, 100 kHz (I2C-bus specification UM10204).  Falls back to Standard-mode when the
 * kernel clock is too slow for Fast-mode's 0.9 us data-valid limit.  All times in ps. */
typedef struct {
    uint64_t low, high, su_dat, vd_dat, period;
} i2c_mode_t;

static uint32_t timing_for(uint32_t fck, const i2c_mode_t *m, uint64_t tr, uint64_t tf) {
    const uint64_t taf_min = 50000u, taf_max = 260000u;
    uint64_t tck = 1000000000000ull / fck;
    for (uint32_t presc = 0; presc < 16u; presc++) {
        uint64_t tp = (presc + 1u) * tck;
        uint64_t scldel = (tr + m->su_dat + tp - 1u) / tp; /* (SCLDEL+1) */
        if (scldel < 1u) scldel = 1u;
        if (scldel > 16u) continue;
        int64_t lo = (int64_t)tf - (int64_t)taf_min - 3 * (int64_t)tck;
        int64_t hi = (int64_t)m->vd_dat - (int64_t)tr - (int64_t)taf_max - 4 * (int64_t)tck;
        uint64_t sdadel = lo > 0 ? ((uint64_t)lo + tp - 1u) / tp : 0u;
        if (hi < 0 || sdadel * tp > (uint64_t)hi || sdadel > 15u) continue;
        uint64_t scll = (m->low + tp - 1u) / tp, sclh = (m->high + tp - 1u) / tp; /* (SCLx+1) */
        uint64_t fastest = (scll + sclh) * tp + 2u * (taf_min + 2u * tck);
        if (fastest < m->period) { /* stretch to the mode's frequency, low:high about 2:1 */
            uint64_t extra = (m->period - fastest + tp - 1u) / tp;
            scll += (2u * extra + 2u) / 3u;
            sclh += extra - (2u * extra + 2u) / 3u;
        }
        if (scll > 256u || sclh > 256u) continue;
        return (presc << 28) | ((uint32_t)(scldel - 1u) << 20) | ((uint32_t)sdadel << 16) |
               ((uint32_t)(sclh - 1u) << 8) | (uint32_t)(scll - 1u);
    }
    return 0;
}

uint32_t l496_i2c_timingr(uint32_t fck, uint32_t rise_ns, uint32_t fall_ns) {
    static const i2c_mode_t FM = {1300000u, 600000u, 100000u, 900000u, 2500000u};
    static const i2c_mode_t SM = {4700000u, 4000000u, 250000u, 3450000u, 10000000u};
    if (fck < 1000000u) return 0;
    uint32_t t = timing_for(fck, &FM, 1000ull * rise_ns, 1000ull * fall_ns);
    return t ? t : timing_for(fck, &SM, 1000ull * rise_ns, 1000ull * fall_ns);
}

/* ---- LSM6DSO (ST lsm6dso-pid lsm6dso_reg.h; reference §4) ------------------------------------------- */
int l496_lsm_odr_code(uint32_t odr_mhz) {
    static const uint32_t ODR[10] = {12500u,  26000u,  52000u,   104000u,  208000u,
                                     417000u, 833000u, 1667000u, 3333000u, 6667000u};
    for (int i = 0; i < 10; i++)
        if (ODR[i] == odr_mhz) return i + 1; /* 0001 = 12.5 Hz ... 1010 = 6.67 kHz */
    return -1;
}

int l496_lsm_fs_code(uint8_t fs_g) { /* FS_XL: 00 +-2 g, 01 +-16 g, 10 +-4 g, 11 +-8 g */
    return fs_g == 2 ? 0 : fs_g == 16 ? 1 : fs_g == 4 ? 2 : fs_g == 8 ? 3 : -1;
}

uint32_t l496_lsm_sens_ug(uint8_t fs_g) { /* 0.061 / 0.122 / 0.244 / 0.488 mg per LSB */
    return fs_g == 2 ? 61u : fs_g == 4 ? 122u : fs_g == 8 ? 244u : fs_g == 16 ? 488u : 0u;
}

int l496_lsm_fifo_word(const uint8_t w[7], int16_t xyz[3]) {
    if ((w[0] >> 3) != 0x02u) return 0; /* TAG_SENSOR: 0x02 accelerometer, not compressed */
    for (int k = 0; k < 3; k++) xyz[k] = (int16_t)(uint16_t)(w[1 + 2 * k] | (w[2 + 2 * k] << 8));
    return 1;
}

uint16_t l496_lsm_fifo_level(uint8_t status1, uint8_t status2, int *overrun) {
    *overrun = (status2 & ((1u << 6) | (1u << 3))) != 0; /* FIFO_OVR_IA | OVER_RUN_LATCHED */
    return (uint16_t)(status1 | ((status2 & 0x03u) << 8)); /* DIFF_FIFO[9:0] */
}

uint32_t l496_lsm_resync_index(uint32_t next, uint64_t t0, uint64_t now, uint32_t odr_mhz, uint16_t level) {
    if (now < t0 || !odr_mhz) return next;
    uint64_t produced = (now - t0) * odr_mhz / 1000000000ull + 1u; /* samples 0..k made by `now` */
    if (produced <= level) return next;
    uint64_t oldest = produced - level;
    return oldest > next ? (uint32_t)oldest : next;
}

uint32_t l496_lsm_poll_us(uint32_t odr_mhz) {
    if (!odr_mhz) return 100000u;
    uint64_t us = 4000000000ull / odr_mhz; /* 4 sample periods */
    return us < 5000u ? 5000u : us > 100000u ? 100000u : (uint32_t)us;
}

/* ---- reset cause (board.h): 0 power-on/pin/brown-out, 1 software (RESET), 2 watchdog, 3 fault --------- */
uint8_t l496_reset_cause(uint32_t csr, int record_valid, uint8_t record_cause) {
    if (csr & (RCC_CSR_IWDGRSTF | RCC_CSR_WWDGRSTF)) return 2;
    if (csr & RCC_CSR_SFTRSTF) /* SYSRESETREQ: a RESET request, or fault.c after a HardFault */
        return record_valid && (record_cause == 1u || record_cause == 3u) ? record_cause : 1u;
    return 0; /* BOR (power-on), NRST pin (button, ST-LINK after flashing), option bytes, firewall */
}
