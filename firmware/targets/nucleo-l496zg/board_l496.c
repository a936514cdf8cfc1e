/*
 * Board support for the NUCLEO-L496ZG + X-NUCLEO-IKS01A3 (docs/firmware-nucleo.md): core/board.h on the
 * real chip, register-level, no HAL.
 *
 * - Clocks (clock.c): MSI 4 MHz at reset; 8 MHz (MSI range 7, Range 2, 1 wait state) after boot, as the
 *   QEMU board; SET_CLOCK to any whole MHz in 4..80 (MSI ranges where they exist, else the PLL from
 *   MSI 4 MHz).  APB1/APB2 undivided, so PCLK1 = HCLK feeds LPUART1 and TIM2.
 * - Link: LPUART1 on PG7 (TX) / PG8 (RX), AF8, to the ST-LINK virtual COM port; port G needs VDDIO2
 *   (PWR_CR2.IOSV).  921 600 baud 8N1.  RX: DMA2 channel 7 circular into a 2 KiB buffer (no byte is lost
 *   while the CPU trains; the IDLE interrupt and the half/full DMA interrupts wake it); TX: a 2 KiB ring sent
 *   by DMA2 channel 6.  BRR follows clock changes (the ring is drained first).
 * - Time: TIM2 counts 1 MHz (PSC follows the clock), extended to 64 bit by its overflow interrupt; its
 *   compare channels end the D7 pulse (CC1), keep the DWT cycle counter's extension current (CC2, every
 *   16.8 s, under the 53.7 s wrap at 80 MHz) and wake the CPU to read the accelerometer FIFO (CC3).
 * - D7 batch marker: PF13 push-pull, high for pulse_us after each board_marker_pulse().
 * - Idle: WFI with interrupts masked while checking for work (an interrupt arriving between the check and
 *   the WFI still wakes it).
 * - Faults: the HardFault/MemManage/BusFault/UsageFault vectors go to targets/common/fault.c, which
 *   records where and resets; the next boot reports it (BOOT reset_cause 3, then a LOG).
 */
#include <string.h>

#include "../../core/board.h"
#include "../../core/odl.h"
#include "../common/cm4.h"
#include "hw.h"

#define DEFAULT_SYSCLK 8000000u /* the QEMU board's default too */
#define RX_SIZE 2048u
#define TX_SIZE 2048u
#define D7_PIN 13u /* PF13 = Arduino D7 */
#define HOUSEKEEPING_US (1u << 24)

/* Which firmware an image is, readable in the .bin without running it (device/nucleo/fwimage.py finds it;
 * the linker keeps it right after the vector table). */
#define ODL_XSTR(x) ODL_STR(x)
#define ODL_STR(x) #x
__attribute__((section(".odl_id"), used)) const char odl_image_id[] =
    "ODL-FW " ODL_XSTR(ODL_FW_MAJOR) "." ODL_XSTR(ODL_FW_MINOR) "." ODL_XSTR(ODL_FW_PATCH) " nucleo-l496zg protocol " ODL_XSTR(
        ODL_PROTOCOL);

static board_info_t info = {"NUCLEO-L496ZG", "STM32L496ZG", "nucleo-l496zg", 0x461, 0x1000, 1024u * 1024u, 0};
static uint8_t cause;
static char boot_msg[120];
static uint32_t hclk = 4000000u;
static l496_clock_plan_t plan_now;

static inline uint32_t irq_save(void) { return cm4_irq_save(); } /* PRIMASK, then interrupts masked */
static inline void irq_restore(uint32_t p) { cm4_irq_restore(p); }

/* ---------------- TIM2: 1 MHz ticks, 64-bit ---------------- */
static volatile uint32_t t_wraps; /* overflows since t_base */
static uint64_t t_base;           /* ticks before the last prescaler change */

uint32_t l496_now_us(void) { return RD(L_TIM2->CNT); }

static uint64_t ticks_locked(void) {
    l496_tim_t *t = L_TIM2;
    uint32_t cnt = RD(t->CNT), w = t_wraps;
    if ((RD(t->SR) & TIM_SR_UIF) && cnt < 0x80000000u) w++; /* wrapped, interrupt not yet taken */
    return t_base + ((uint64_t)w << 32) + cnt;
}

uint64_t board_ticks(void) {
    uint32_t p = irq_save();
    uint64_t v = ticks_locked();
    irq_restore(p);
    return v;
}

/* ---------------- DWT cycles, 64-bit ---------------- */
static uint32_t c_last;
static uint64_t c_high;

static uint64_t cycles_locked(void) {
    uint32_t c = DWT_CYCCNT;
    if (c < c_last) c_high += 1ull << 32;
    c_last = c;
    return c_high | c;
}

uint64_t board_cycles(void) {
    uint32_t p = irq_save();
    uint64_t v = cycles_locked();
    irq_restore(p);
    return v;
}

/* ---------------- D7 marker (PF13) ---------------- */
static volatile uint8_t marker_high;

static void marker_low(void) {
    uint32_t p = irq_save();
    WR(L_GPIOF->BSRR, 1u << (D7_PIN + 16u));
    CLRB(L_TIM2->DIER, TIM_DIER_CC1IE);
    marker_high = 0;
    irq_restore(p);
}

void board_marker_pulse(uint32_t pulse_us) {
    l496_tim_t *t = L_TIM2;
    if (!pulse_us) pulse_us = 1;
    uint32_t p = irq_save();
    WR(L_GPIOF->BSRR, 1u << D7_PIN); /* rising edge now */
    uint32_t start = RD(t->CNT);
    WR(t->CCR1, start + pulse_us);
    WR(t->SR, ~TIM_SR_CC1IF);
    SETB(t->DIER, TIM_DIER_CC1IE);
    marker_high = 1;
    irq_restore(p);
    if (RD(t->CNT) - start >= pulse_us) marker_low(); /* a 1 us pulse may end before the compare was armed */
}

/* ---------------- sensor state (used by the TIM2 interrupt) ---------------- */
static uint8_t s_whoami, s_on;
static volatile uint8_t s_due;
static uint32_t s_odr = 26000, s_next, s_poll_us = 100000;
static uint8_t s_fs = 2;
static uint64_t s_t0;

void l496_tim2_isr(void);
void l496_tim2_isr(void) {
    l496_tim_t *t = L_TIM2;
    uint32_t sr = RD(t->SR), ie = RD(t->DIER);
    if (sr & TIM_SR_UIF) {
        WR(t->SR, ~TIM_SR_UIF);
        t_wraps++;
    }
    if (sr & TIM_SR_CC1IF) {
        WR(t->SR, ~TIM_SR_CC1IF);
        if (ie & TIM_DIER_CC1IE) marker_low();
    }
    if (sr & TIM_SR_CC2IF) {
        WR(t->SR, ~TIM_SR_CC2IF);
        (void)cycles_locked(); /* interrupts are off in a handler of the only priority used */
        WR(t->CCR2, RD(t->CCR2) + HOUSEKEEPING_US);
    }
    if (sr & TIM_SR_CC3IF) {
        WR(t->SR, ~TIM_SR_CC3IF);
        if (ie & TIM_DIER_CC3IE) {
            s_due = 1;
            WR(t->CCR3, RD(t->CCR3) + s_poll_us);
        }
    }
}

static void tim2_init(void) {
    l496_tim_t *t = L_TIM2;
    RCC_ENABLE(L_RCC->APB1ENR1, RCC_APB1ENR1_TIM2EN);
    WR(t->CR1, TIM_CR1_URS);
    WR(t->PSC, l496_tim2_psc(hclk));
    WR(t->ARR, 0xFFFFFFFFu);
    WR(t->CCR2, HOUSEKEEPING_US);
    WR(t->EGR, TIM_EGR_UG); /* load PSC; URS: no update flag for it */
    WR(t->SR, 0);
    WR(t->DIER, TIM_DIER_UIE | TIM_DIER_CC2IE);
    SETB(t->CR1, TIM_CR1_CEN);
    cm4_irq_enable(L496_IRQ_TIM2);
}

/* After a clock change: the counter restarts at 0 with the new prescaler; the ticks until `now` go to t_base.
 * The caller reads `now` before the clock changes: during the switch TIM2 still divides by the old clock's
 * prescaler while HCLK moves (8 -> 80 MHz: 10 ticks per us), so a count read after it would jump ahead; the
 * ticks stand still for the switch instead (tens of us; board_ticks never runs ahead of time). */
static void tim2_retime(uint64_t now) {
    l496_tim_t *t = L_TIM2;
    uint32_t p = irq_save();
    WR(t->PSC, l496_tim2_psc(hclk));
    WR(t->EGR, TIM_EGR_UG);
    WR(t->SR, ~(TIM_SR_UIF | TIM_SR_CC2IF | TIM_SR_CC3IF));
    t_base = now;
    t_wraps = 0;
    WR(t->CCR2, HOUSEKEEPING_US);
    WR(t->CCR3, s_poll_us);
    irq_restore(p);
    if (marker_high) marker_low(); /* its compare time was relative to the old count */
}

/* ---------------- LPUART1 + DMA ---------------- */
static uint8_t rx_buf[RX_SIZE] __attribute__((aligned(4)));
static uint8_t tx_buf[TX_SIZE] __attribute__((aligned(4)));
static uint32_t rx_rd;
static volatile uint32_t tx_head, tx_tail, tx_inflight;

static void tx_kick(void) { /* interrupts masked by the caller */
    l496_dma_ch_t *ch = &L_DMA2->CH[L496_LPUART_TX_CH - 1u];
    if (tx_inflight || tx_head == tx_tail) return;
    uint32_t n = l496_ring_chunk(tx_head, tx_tail, TX_SIZE);
    CLRB(ch->CCR, DMA_CCR_EN);
    WR(ch->CMAR, (uint32_t)(uintptr_t)&tx_buf[tx_tail & (TX_SIZE - 1u)]);
    WR(ch->CNDTR, n);
    tx_inflight = n;
    SETB(ch->CCR, DMA_CCR_EN);
}

void l496_dma_tx_isr(void);
void l496_dma_tx_isr(void) {
    l496_dma_t *d = L_DMA2;
    if (RD(d->ISR) & DMA_ISR_TCIF(L496_LPUART_TX_CH)) {
        WR(d->IFCR, DMA_IFCR_CGIF(L496_LPUART_TX_CH));
        CLRB(d->CH[L496_LPUART_TX_CH - 1u].CCR, DMA_CCR_EN);
        tx_tail += tx_inflight;
        tx_inflight = 0;
        tx_kick();
    }
}

void l496_dma_rx_isr(void);
void l496_dma_rx_isr(void) { WR(L_DMA2->IFCR, DMA_IFCR_CGIF(L496_LPUART_RX_CH)); } /* only wakes the CPU */

void l496_lpuart_isr(void);
void l496_lpuart_isr(void) { WR(L_LPUART1->ICR, USART_ICR_IDLECF | USART_ICR_ORECF); } /* a burst ended: wake */

static void uart_init(void) {
    l496_rcc_t *r = L_RCC;
    l496_gpio_t *g = L_GPIOG;
    l496_usart_t *u = L_LPUART1;
    l496_dma_t *d = L_DMA2;
    RCC_ENABLE(r->APB1ENR1, RCC_APB1ENR1_PWREN);
    SETB(L_PWR->CR2, PWR_CR2_IOSV); /* VDDIO2 valid: without it port G (the VCP pins) stays dead */
    RCC_ENABLE(r->AHB2ENR, RCC_AHB2ENR_GPIOGEN);
    RCC_ENABLE(r->AHB1ENR, RCC_AHB1ENR_DMA2EN);
    RCC_ENABLE(r->APB1ENR2, RCC_APB1ENR2_LPUART1EN);
    MODIFY(r->CCIPR, RCC_CCIPR_LPUART1SEL_MSK, 0); /* kernel clock PCLK1 */
    /* PG7 = LPUART1_TX, PG8 = LPUART1_RX, AF8; RX pulled up so a floating line is idle */
    MODIFY(g->AFR[0], 0xFu << 28, 8u << 28);
    MODIFY(g->AFR[1], 0xFu << 0, 8u << 0);
    MODIFY(g->PUPDR, 3u << 16, 1u << 16);
    MODIFY(g->OSPEEDR, 3u << 14, 2u << 14);
    MODIFY(g->MODER, (3u << 14) | (3u << 16), (GPIO_MODE_AF << 14) | (GPIO_MODE_AF << 16));
    /* DMA2 channel 7 <- RDR (circular), channel 6 -> TDR; request 4 on both */
    MODIFY(d->CSELR, (0xFu << DMA_CSELR_POS(6)) | (0xFu << DMA_CSELR_POS(7)),
           (L496_LPUART_DMA_REQ << DMA_CSELR_POS(6)) | (L496_LPUART_DMA_REQ << DMA_CSELR_POS(7)));
    l496_dma_ch_t *rx = &d->CH[L496_LPUART_RX_CH - 1u], *tx = &d->CH[L496_LPUART_TX_CH - 1u];
    WR(rx->CCR, 0);
    WR(rx->CPAR, (uint32_t)(uintptr_t)&u->RDR);
    WR(rx->CMAR, (uint32_t)(uintptr_t)rx_buf);
    WR(rx->CNDTR, RX_SIZE);
    WR(rx->CCR, DMA_CCR_MINC | DMA_CCR_CIRC | DMA_CCR_HTIE | DMA_CCR_TCIE | DMA_CCR_EN);
    WR(tx->CCR, 0);
    WR(tx->CPAR, (uint32_t)(uintptr_t)&u->TDR);
    WR(tx->CCR, DMA_CCR_MINC | DMA_CCR_DIR | DMA_CCR_TCIE);
    /* LPUART1: 8N1, DMA both ways, overrun detection off (DMA keeps up; a lost byte is caught by the CRC) */
    WR(u->CR1, 0);
    WR(u->BRR, l496_lpuart_brr(hclk, L496_BAUD));
    WR(u->CR3, USART_CR3_DMAR | USART_CR3_DMAT | USART_CR3_OVRDIS);
    WR(u->CR1, USART_CR1_UE | USART_CR1_RE | USART_CR1_TE | USART_CR1_IDLEIE);
    rx_rd = 0;
    tx_head = tx_tail = tx_inflight = 0;
    cm4_irq_enable(L496_IRQ_DMA2_CH6);
    cm4_irq_enable(L496_IRQ_DMA2_CH7);
    cm4_irq_enable(L496_IRQ_LPUART1);
}

/* Everything queued has left the shift register (before a clock change or a reset). */
static void uart_drain(uint32_t timeout_us) {
    uint32_t t0 = l496_now_us();
    while ((tx_head != tx_tail || tx_inflight) && l496_now_us() - t0 < timeout_us) {
    }
    (void)l496_wait(&L_LPUART1->ISR, USART_ISR_TC, USART_ISR_TC, 2000u);
}

static uint32_t rx_cndtr(void) { return RD(L_DMA2->CH[L496_LPUART_RX_CH - 1u].CNDTR); }

size_t board_link_read(uint8_t *buf, size_t max) {
    uint32_t avail = l496_rx_avail(rx_rd, rx_cndtr(), RX_SIZE);
    size_t n = 0;
    while (n < max && avail) {
        uint32_t run = RX_SIZE - rx_rd;
        if (run > avail) run = avail;
        if (run > max - n) run = (uint32_t)(max - n);
        memcpy(buf + n, rx_buf + rx_rd, run);
        n += run;
        avail -= run;
        rx_rd = (rx_rd + run) % RX_SIZE;
    }
    return n;
}

size_t board_link_tx_free(void) { return TX_SIZE - l496_ring_used(tx_head, tx_tail); }

size_t board_link_write(const uint8_t *buf, size_t n) {
    size_t k = board_link_tx_free();
    if (k > n) k = n;
    for (size_t i = 0; i < k;) {
        uint32_t off = (tx_head + (uint32_t)i) & (TX_SIZE - 1u);
        size_t run = TX_SIZE - off;
        if (run > k - i) run = k - i;
        memcpy(tx_buf + off, buf + i, run);
        i += run;
    }
    cm4_dmb();
    uint32_t p = irq_save();
    tx_head += (uint32_t)k;
    tx_kick();
    irq_restore(p);
    return k;
}

/* ---------------- clocks ---------------- */
uint32_t board_sysclk(void) { return hclk; }

uint32_t board_set_sysclk(uint32_t hz) {
    l496_clock_plan_t p;
    if (l496_clock_plan(hz, &p)) return 0;
    uart_drain(50000u);
    uint64_t now = board_ticks(); /* before TIM2's prescaler is wrong for the clock (tim2_retime) */
    CLRB(L_LPUART1->CR1, USART_CR1_UE); /* BRR is written with the LPUART disabled */
    if (l496_clock_apply(&p) == 0) {
        plan_now = p;
    } else if (l496_clock_apply(&plan_now) != 0) { /* back to the clock before; failing that, what runs */
        l496_clock_plan(4000000u, &plan_now);
        (void)l496_clock_apply(&plan_now);
    }
    hclk = l496_clock_hclk();
    WR(L_LPUART1->BRR, l496_lpuart_brr(hclk, L496_BAUD));
    SETB(L_LPUART1->CR1, USART_CR1_UE);
    tim2_retime(now);
    return hclk;
}

/* ---------------- board interface ---------------- */
void board_init(void) {
    l496_rcc_t *r = L_RCC;
    /* reset cause: RCC_CSR flags, plus fault.c's record for software resets; then clear the flags */
    uint32_t csr = RD(r->CSR);
    uint8_t rec = cm4_take_reset_cause(boot_msg, sizeof boot_msg);
    cause = l496_reset_cause(csr, rec != 0, rec);
    if (cause != 3u) boot_msg[0] = 0;
    SETB(r->CSR, RCC_CSR_RMVF);
    uint32_t id = REG32(L496_DBGMCU_IDCODE);
    if (id & 0xFFFu) info.dev_id = (uint16_t)(id & 0xFFFu), info.rev_id = (uint16_t)(id >> 16);
    uint16_t kib = *(volatile uint16_t *)L496_FLASHSIZE_ADDR;
    if (kib && kib != 0xFFFFu) info.flash_total = (uint32_t)kib * 1024u;

    hclk = l496_clock_hclk(); /* MSI 4 MHz out of reset */
    tim2_init();
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u; /* CYCCNTENA */
    uint64_t now = board_ticks();
    if (l496_clock_plan(DEFAULT_SYSCLK, &plan_now) == 0 && l496_clock_apply(&plan_now) == 0) hclk = l496_clock_hclk();
    tim2_retime(now);
    /* PF13 (D7) push-pull output, low */
    RCC_ENABLE(r->AHB2ENR, RCC_AHB2ENR_GPIOFEN);
    WR(L_GPIOF->BSRR, 1u << (D7_PIN + 16u));
    MODIFY(L_GPIOF->MODER, 3u << (2u * D7_PIN), GPIO_MODE_OUT << (2u * D7_PIN));
    uart_init();
    l496_i2c_init();
    uint32_t t0 = l496_now_us(); /* the LSM6DSO may still be booting right after power-on: retry 50 ms */
    do {
        s_whoami = l496_lsm_probe();
    } while (!s_whoami && l496_now_us() - t0 < 50000u);
    cm4_enable_irq();
}

const board_info_t *board_get_info(void) { return &info; }
uint8_t board_reset_cause(void) { return cause; }
const char *board_boot_message(void) { return boot_msg; }

void board_reset(uint8_t c) {
    uart_drain(100000u); /* the ACK of RESET is still in the TX ring */
    cm4_reset_with_cause(c);
}

void board_idle(void) {
    cm4_disable_irq();
    if (!l496_rx_avail(rx_rd, rx_cndtr(), RX_SIZE) && !s_due) cm4_wfi(); /* a pending interrupt still wakes it */
    cm4_enable_irq();
}

void board_poll(void) {}
void board_job_state(int running) { (void)running; } /* no LED: it would draw from the measured MCU supply */

/* ---------------- accelerometer ---------------- */
uint8_t board_sensor_whoami(void) { return s_whoami; }

int board_sensor_config(uint32_t odr_mhz, uint8_t fs_g) {
    if (l496_lsm_odr_code(odr_mhz) < 0 || l496_lsm_fs_code(fs_g) < 0) return -1;
    s_odr = odr_mhz;
    s_fs = fs_g; /* applied by the next board_sensor_start (the core restarts a running stream) */
    return 0;
}

int board_sensor_start(void) {
    l496_tim_t *t = L_TIM2;
    CLRB(t->DIER, TIM_DIER_CC3IE);
    s_on = 0;
    if (!s_whoami || l496_lsm_start(s_odr, s_fs)) return -1;
    s_t0 = board_ticks() + 1000000000ull / s_odr; /* the first sample is ready one period after power-on */
    s_next = 0;
    s_due = 0;
    s_poll_us = l496_lsm_poll_us(s_odr);
    uint32_t p = irq_save();
    WR(t->CCR3, RD(t->CNT) + s_poll_us);
    WR(t->SR, ~TIM_SR_CC3IF);
    SETB(t->DIER, TIM_DIER_CC3IE);
    irq_restore(p);
    s_on = 1;
    return 0;
}

void board_sensor_stop(void) {
    CLRB(L_TIM2->DIER, TIM_DIER_CC3IE);
    if (s_on) l496_lsm_stop();
    s_on = 0;
    s_due = 0;
}

size_t board_sensor_read(int16_t (*xyz)[3], size_t max, uint32_t *index, uint64_t *t0) {
    *index = s_next;
    *t0 = s_t0;
    if (!s_on || !s_due || !max) return 0;
    l496_lsm_status_t st;
    int n = l496_lsm_read(xyz, max, &st);
    if (n < 0) { /* bus error: try again next period */
        s_due = 0;
        return 0;
    }
    if (st.fresh && st.overrun) { /* samples were overwritten: the ones left are the newest */
        s_next = l496_lsm_resync_index(s_next, s_t0, board_ticks(), s_odr, st.level);
        *index = s_next;
    }
    s_next += (uint32_t)n;
    if (!st.more) s_due = 0;
    return (size_t)n;
}

int board_sim_request(uint8_t type, const uint8_t *payload, uint16_t len, uint8_t *out, uint16_t cap) {
    (void)type, (void)payload, (void)len, (void)out, (void)cap;
    return -1; /* a real person is holding the board */
}
