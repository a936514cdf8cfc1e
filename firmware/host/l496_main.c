/*
 * odl-l496: the NUCLEO-L496ZG board support (targets/nucleo-l496zg/calc.c, clock.c, i2c.c, lsm6dso.c,
 * board_l496.c) driven line by line from stdin against the fake register file (l496_fake.c), for
 * tests/device/test_firmware_l496.py.  One command per line, one answer line (or several, said below) each:
 *
 *   plan HZ                 ok HCLK SYSCLK USE_PLL MSIRANGE M N R HPRE VOS LATENCY PLLCFGR | ERR
 *   lat HZ VOS | brr FCK BAUD | psc FTIM | odr MHZ | fs G | sens G | poll ODR     one integer
 *   timingr FCK RISE_NS FALL_NS                                                   hex
 *   word HEX(7 bytes)       1 X Y Z | 0
 *   level S1 S2             LEVEL OVERRUN
 *   resync NEXT T0 NOW ODR LEVEL | cause CSR VALID REC | rxavail RD CNDTR SIZE | chunk HEAD TAIL SIZE
 *   reset [present|absent|stuck]      fresh fake chip, I2C pins/clock set up           ok
 *   stuck none|WHAT...                faults of the chip from now on (l496_fake.h FAKE_STUCK_*): pll msi vosf
 *                                     acr sws pllstop hsi                                ok | ERR
 *   switch HZ               (VIOLATION lines) ok|fail HCLK_REGS HCLK_MODEL VOS LATENCY VIOLATIONS ELAPSED_US
 *   hclk                    HCLK_REGS HCLK_MODEL (l496_clock_hclk(), the fake's clock tree)
 *   wait TIMEOUT READY JUMP l496_wait() on a register that reads 1 from READY us on, the clock jumping by JUMP
 *                           us at the wait's second look at it: RC ELAPSED_US
 *   tour                    for every A, B in 4..80 MHz: reset, switch A, switch B; one line per pair
 *                           "A B RC HCLK_REGS HCLK_MODEL VOS LATENCY VIOLATIONS" (VIOLATION lines first)
 *   probe                   WHOAMI ELAPSED_US I2C_STARTS SENSOR_RESETS VIOLATIONS
 *   start ODR FS            RC CTRL1_XL FIFO_CTRL3 FIFO_CTRL4 CTRL3_C CTRL9_XL (hex) ELAPSED_US
 *   stop                    CTRL1_XL FIFO_CTRL4 HSION
 *   push TAG X Y Z | fill N [X0]      words into the simulated FIFO                      ok
 *   read MAX                N FRESH LEVEL OVERRUN MORE, then N lines "X Y Z"
 *   timing                  TIMINGR in use (hex)
 *   enable 0|1              l496_i2c_enable: RC ELAPSED_US VIOLATIONS
 *   xfer ADDR REG NW NR     l496_i2c_xfer of REG then NW - 1 zero bytes, then NR bytes read:
 *                           RC ELAPSED_US VIOLATIONS, then the bytes read (hex) on one line if RC is 0
 *   stretch US | sdahold N  the slave stretches each byte by US; it holds SDA low for N more SCL clocks  ok
 *   nackat N | buserr N     the N-th START from now is not acknowledged (a contact lost once) / meets a
 *                           bus error                                                            ok
 *   lsmreset N              a software reset of the LSM6DSO lasts N reads of CTRL3_C (default 2)   ok
 *   lsmpoke REG VAL | lsmpeek REG   the simulated LSM6DSO's registers, not through the bus      ok | hex
 *   state                   HSION I2C_PE LSM_WRITES I2C_STARTS VIOLATIONS
 *   advance US              the fake's clock moves on                                            ok
 *   bus                     SCL_PULSES STOPS MIN_SCL_LOW MIN_SCL_HIGH MIN_STOP_SETUP SDA_HELD VIOLATIONS
 *   poke REG VALUE | peek REG  a raw register access through the fake (REG: rcc.cr, rcc.cfgr, rcc.pllcfgr,
 *                           pwr.cr1, pwr.sr2, flash.acr, rcc.csr): VIOLATION lines, then the value / "ok"; for
 *                           checking that the fake's rules catch a wrong sequence
 * board_l496.c (the fake's TIM2, DWT, LPUART1 + DMA2, GPIOF/G, NVIC; VIOLATION lines come first):
 *   binit [CSR [REC]]       fresh chip with RCC_CSR |= CSR (and fault.c's record = REC), board_init():
 *                           SYSCLK HCLK_MODEL CAUSE PF13_MODE PF13_LEVEL WHOAMI DEV REV FLASH VIOLATIONS [MSG]
 *   binfo                   board_get_info(): BOARD MCU BUILD DEV REV FLASH EMULATED
 *   shield present|absent   the LSM6DSO on the next binit's bus or not                               ok
 *   sconfig ODR FS | bsim   board_sensor_config's / board_sim_request's return
 *   chipid IDCODE KIB       what the next binit's chip reads in DBGMCU_IDCODE and the flash-size word   ok
 *   hsend N                 the host sends the next N bytes of its sequence at 921 600 baud          ok
 *   lread MAX               board_link_read: N TOTAL BAD (bytes got, in all, not the sequence's next)
 *   lwrite N                board_link_write of the next N bytes of the TX sequence: ACCEPTED FREE
 *   txfree                  board_link_tx_free()
 *   wire                    the bytes the host got since the last "wire": N BAD BAUD_MIN BAUD_MAX NS
 *                           (NS: from the end of the first to the end of the last)
 *   clk HZ                  board_set_sysclk: RET SYSCLK HCLK_MODEL BRR DTICKS DUS VIOLATIONS
 *   ticks | cycles          board_ticks() / board_cycles(), then the fake's microseconds
 *   tim2 CNT | dwt CYCCNT   set TIM2's counter / the DWT cycle counter                               ok
 *   mask 0|1                PRIMASK                                                                  ok
 *   run US                  time moves on US microseconds (interrupts taken as they come)            ok
 *   pulse US                board_marker_pulse(US)                                                   ok
 *   pulserace US K J        the same with register reads costing nothing and the clock jumping J us at the
 *                           K-th register access of it                                               ok
 *   edges                   PF13's edges since the last "edges": N, then "T_US LEVEL" pairs on one line
 *   idle                    board_idle(): ELAPSED_US WFIS
 *   isr                     handler calls TIM2 DMA_TX DMA_RX LPUART, RX bytes received, lost, VIOLATIONS
 *   sstart [ODR FS] | sstop board_sensor_config (none: the defaults) + start: RC POLL_US(ODR) CTRL1_XL; stop: ok
 *   sread MAX               board_sensor_read: N INDEX T0 NOW_TICKS
 *   breset C                board_reset(C) (lands back here): reset C ELAPSED_US WIRE_PENDING
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/board.h"
#include "../targets/common/cm4.h"
#include "../targets/nucleo-l496zg/hw.h"
#include "l496_fake.h"

static unsigned long long num(const char *s) { return strtoull(s, NULL, 0); }
#define ARGV(i) (n > (i) ? num(a[i]) : 0ull)

static int apply_hz(uint32_t hz) {
    l496_clock_plan_t p;
    if (l496_clock_plan(hz, &p)) return -2;
    return l496_clock_apply(&p);
}

static void show_switch(int rc, uint64_t elapsed_us) {
    printf("%s %u %u %u %u %lu %llu\n", rc == 0 ? "ok" : "fail", (unsigned)l496_clock_hclk(), (unsigned)fake_hclk(),
           (unsigned)((l496_fake_pwr.CR1 >> 9) & 3u), (unsigned)(l496_fake_flash.ACR & 7u), fake.violations,
           (unsigned long long)elapsed_us);
}

static L496_REG *reg_named(const char *name) {
    static const struct {
        const char *name;
        L496_REG *reg;
    } R[] = {
        {"rcc.cr", &l496_fake_rcc.CR},     {"rcc.cfgr", &l496_fake_rcc.CFGR}, {"rcc.pllcfgr", &l496_fake_rcc.PLLCFGR},
        {"pwr.cr1", &l496_fake_pwr.CR1},   {"pwr.sr2", &l496_fake_pwr.SR2},   {"flash.acr", &l496_fake_flash.ACR},
        {"rcc.apb1enr1", &l496_fake_rcc.APB1ENR1}, {"gpiob.moder", &l496_fake_gpiob.MODER},
        {"gpiob.afrh", &l496_fake_gpiob.AFR[1]}, {"rcc.csr", &l496_fake_rcc.CSR},
        {"gpiog.moder", &l496_fake_gpiog.MODER}, {"lpuart.brr", &l496_fake_lpuart1.BRR},
        {"dma.cndtr6", &l496_fake_dma2.CH[5].CNDTR},
    };
    for (size_t i = 0; name && i < sizeof R / sizeof R[0]; i++)
        if (!strcmp(name, R[i].name)) return R[i].reg;
    return NULL;
}

static void reset_chip(int mode) {
    fake_reset(mode);
    l496_i2c_init();
}

/* the host's RX byte sequence and the firmware's TX one: position -> byte, never periodic in 2 KiB */
static uint8_t seq_byte(uint32_t i, uint32_t salt) { return (uint8_t)((i * 2654435761u + salt) >> 13); }
static uint32_t rx_sent, rx_got, rx_bad, tx_made, wire_seen;
static uint32_t chip_id = 0x10000461u, chip_kib = 1024u; /* DBGMCU_IDCODE, the flash-size word */
static int shield = FAKE_I2C_PRESENT;

static void board_commands(char **a, int n, const char *c) {
    if (!strcmp(c, "binit")) {
        fake_reset(shield);
        fake.idcode = chip_id;
        l496_fake_flashsize = (uint16_t)chip_kib;
        l496_fake_rcc.CSR |= (uint32_t)ARGV(1);
        if (n > 2) cm4_noinit.magic = CM4_NOINIT_MAGIC, cm4_noinit.cause = (uint32_t)ARGV(2), cm4_noinit.pc = 0x0800BEEFu;
        rx_sent = rx_got = rx_bad = tx_made = wire_seen = 0;
        board_init();
        const board_info_t *bi = board_get_info();
        printf("%u %u %u %u %u %u %x %x %u %lu%s%s\n", (unsigned)board_sysclk(), (unsigned)fake_hclk(),
               board_reset_cause(), (unsigned)((l496_fake_gpiof.MODER >> 26) & 3u), (unsigned)fake.pf13,
               board_sensor_whoami(), bi->dev_id, bi->rev_id, (unsigned)bi->flash_total, fake.violations,
               board_boot_message()[0] ? " " : "", board_boot_message());
    } else if (!strcmp(c, "binfo")) {
        const board_info_t *bi = board_get_info();
        printf("%s %s %s %x %x %u %u\n", bi->board, bi->mcu, bi->build, bi->dev_id, bi->rev_id, (unsigned)bi->flash_total,
               bi->emulated);
    } else if (!strcmp(c, "shield")) {
        shield = n > 1 && !strcmp(a[1], "absent") ? FAKE_I2C_ABSENT : FAKE_I2C_PRESENT;
        puts("ok");
    } else if (!strcmp(c, "sconfig")) {
        printf("%d\n", board_sensor_config((uint32_t)ARGV(1), (uint8_t)ARGV(2)));
    } else if (!strcmp(c, "bsim")) {
        uint8_t o[4] = {0};
        printf("%d\n", board_sim_request(1, o, 0, o, sizeof o));
    } else if (!strcmp(c, "chipid")) {
        chip_id = (uint32_t)ARGV(1), chip_kib = (uint32_t)ARGV(2);
        puts("ok");
    } else if (!strcmp(c, "hsend")) {
        static uint8_t b[FAKE_HQ];
        uint32_t k = (uint32_t)ARGV(1) < FAKE_HQ ? (uint32_t)ARGV(1) : FAKE_HQ;
        for (uint32_t i = 0; i < k; i++) b[i] = seq_byte(rx_sent + i, 0x5A5A);
        rx_sent += k;
        fake_host_send(b, k);
        puts("ok");
    } else if (!strcmp(c, "lread")) {
        static uint8_t b[FAKE_HQ + 64];
        size_t max = (size_t)ARGV(1) < FAKE_HQ ? (size_t)ARGV(1) : FAKE_HQ;
        memset(b, 0xEE, sizeof b);
        size_t got = board_link_read(b, max);
        for (size_t i = 0; i < got; i++) rx_bad += b[i] != seq_byte(rx_got + (uint32_t)i, 0x5A5A);
        for (size_t i = got; i < sizeof b; i++) rx_bad += b[i] != 0xEE; /* nothing written past what it returns */
        rx_got += (uint32_t)got;
        printf("%zu %u %u\n", got, (unsigned)rx_got, (unsigned)rx_bad);
    } else if (!strcmp(c, "lwrite")) {
        static uint8_t b[65536];
        size_t k = (size_t)ARGV(1) < sizeof b ? (size_t)ARGV(1) : sizeof b;
        for (size_t i = 0; i < k; i++) b[i] = seq_byte(tx_made + (uint32_t)i, 0xC3);
        size_t got = board_link_write(b, k);
        tx_made += (uint32_t)got;
        printf("%zu %zu\n", got, board_link_tx_free());
    } else if (!strcmp(c, "txfree")) {
        printf("%zu\n", board_link_tx_free());
    } else if (!strcmp(c, "wire")) {
        uint32_t bad = 0, k = fake.wire_n < FAKE_WIRE ? fake.wire_n : FAKE_WIRE;
        for (uint32_t i = 0; i < k; i++) bad += fake.wire[i] != seq_byte(wire_seen + i, 0xC3);
        wire_seen += fake.wire_n;
        printf("%u %u %u %u %llu\n", (unsigned)fake.wire_n, (unsigned)bad, (unsigned)fake.wire_baud_min,
               (unsigned)fake.wire_baud_max, (unsigned long long)(fake.wire_last_ns - fake.wire_first_ns));
        fake.wire_n = 0, fake.wire_baud_min = fake.wire_baud_max = 0, fake.wire_first_ns = fake.wire_last_ns = 0;
    } else if (!strcmp(c, "clk")) {
        uint64_t t0 = board_ticks(), u0 = fake.now_us;
        uint32_t ret = board_set_sysclk((uint32_t)ARGV(1));
        uint64_t t1 = board_ticks(), u1 = fake.now_us;
        printf("%u %u %u %u %lld %llu %lu\n", (unsigned)ret, (unsigned)board_sysclk(), (unsigned)fake_hclk(),
               (unsigned)l496_fake_lpuart1.BRR, (long long)(t1 - t0), (unsigned long long)(u1 - u0), fake.violations);
    } else if (!strcmp(c, "ticks")) {
        uint64_t t = board_ticks();
        printf("%llu %llu\n", (unsigned long long)t, (unsigned long long)fake.now_us);
    } else if (!strcmp(c, "cycles")) {
        uint64_t t = board_cycles();
        printf("%llu %llu\n", (unsigned long long)t, (unsigned long long)fake.now_us);
    } else if (!strcmp(c, "tim2")) {
        fake_sync();
        l496_fake_tim2.CNT = (uint32_t)ARGV(1);
        puts("ok");
    } else if (!strcmp(c, "dwt")) {
        fake_sync();
        fake.dwt_cyccnt = (uint32_t)ARGV(1);
        puts("ok");
    } else if (!strcmp(c, "mask")) {
        (void)l496_fake_primask(1, (uint32_t)ARGV(1));
        puts("ok");
    } else if (!strcmp(c, "run")) {
        fake.now_us += ARGV(1);
        fake_sync();
        puts("ok");
    } else if (!strcmp(c, "pulse")) {
        board_marker_pulse((uint32_t)ARGV(1));
        puts("ok");
    } else if (!strcmp(c, "pulserace")) {
        fake.rd_free = 1, fake.acc_jump_at = (uint32_t)ARGV(2), fake.acc_jump_us = (uint32_t)ARGV(3);
        board_marker_pulse((uint32_t)ARGV(1));
        fake.rd_free = 0, fake.acc_jump_at = 0;
        puts("ok");
    } else if (!strcmp(c, "edges")) {
        printf("%u", (unsigned)fake.edge_n);
        for (uint32_t i = 0; i < fake.edge_n && i < FAKE_EDGES; i++)
            printf(" %llu %u", (unsigned long long)fake.edge_us[i], fake.edge_level[i]);
        puts("");
        fake.edge_n = 0;
    } else if (!strcmp(c, "idle")) {
        uint64_t u0 = fake.now_us;
        unsigned long w0 = fake.wfis;
        board_idle();
        printf("%llu %lu\n", (unsigned long long)(fake.now_us - u0), fake.wfis - w0);
    } else if (!strcmp(c, "isr")) {
        printf("%lu %lu %lu %lu %lu %lu %lu\n", fake.isr_calls[0], fake.isr_calls[1], fake.isr_calls[2],
               fake.isr_calls[3], fake.rx_bytes, fake.rx_lost, fake.violations);
    } else if (!strcmp(c, "sstart")) {
        int rc = n > 1 ? board_sensor_config((uint32_t)ARGV(1), (uint8_t)ARGV(2)) : 0; /* none: the defaults */
        if (!rc) rc = board_sensor_start();
        printf("%d %u %02x\n", rc, (unsigned)l496_lsm_poll_us((uint32_t)ARGV(1)), fake.lsm[0x10]);
    } else if (!strcmp(c, "sstop")) {
        board_sensor_stop();
        puts("ok");
    } else if (!strcmp(c, "sread")) {
        static int16_t xyz[1024][3];
        uint32_t index = 0;
        uint64_t t0 = 0;
        size_t max = (size_t)ARGV(1) < 1024 ? (size_t)ARGV(1) : 1024;
        size_t got = board_sensor_read(xyz, max, &index, &t0);
        printf("%zu %u %llu %llu\n", got, (unsigned)index, (unsigned long long)t0, (unsigned long long)board_ticks());
    } else if (!strcmp(c, "breset")) {
        static jmp_buf back;
        uint64_t u0 = fake.now_us;
        fake.reset_jmp = &back;
        if (!setjmp(back)) board_reset((uint8_t)ARGV(1));
        fake.reset_jmp = NULL;
        printf("reset %u %llu %u\n", (unsigned)cm4_noinit.cause, (unsigned long long)(fake.now_us - u0),
               (unsigned)(fake.shifting || fake.tdr_full));
    } else {
        printf("ERR unknown command %s\n", c);
    }
}

int main(void) {
    char line[512];
    reset_chip(FAKE_I2C_PRESENT);
    while (fgets(line, sizeof line, stdin)) {
        char *a[8] = {0};
        int n = 0;
        for (char *t = strtok(line, " \t\r\n"); t && n < 8; t = strtok(NULL, " \t\r\n")) a[n++] = t;
        if (!n) continue;
        const char *c = a[0];
#define ARG(i) (n > (i) ? num(a[i]) : 0ull)
        if (!strcmp(c, "plan")) {
            l496_clock_plan_t p;
            if (l496_clock_plan((uint32_t)ARG(1), &p)) {
                puts("ERR");
            } else {
                printf("ok %u %u %u %u %u %u %u %u %u %u %08x\n", (unsigned)p.hclk, (unsigned)p.sysclk, p.use_pll,
                       p.msirange, p.pllm, p.plln, p.pllr, p.hpre_div, p.vos, p.latency,
                       p.use_pll ? (unsigned)l496_pllcfgr(&p) : 0u);
            }
        } else if (!strcmp(c, "lat")) {
            printf("%d\n", l496_flash_latency((uint32_t)ARG(1), (uint8_t)ARG(2)));
        } else if (!strcmp(c, "brr")) {
            printf("%u\n", (unsigned)l496_lpuart_brr((uint32_t)ARG(1), (uint32_t)ARG(2)));
        } else if (!strcmp(c, "psc")) {
            printf("%u\n", (unsigned)l496_tim2_psc((uint32_t)ARG(1)));
        } else if (!strcmp(c, "timingr")) {
            printf("%08x\n", (unsigned)l496_i2c_timingr((uint32_t)ARG(1), (uint32_t)ARG(2), (uint32_t)ARG(3)));
        } else if (!strcmp(c, "odr")) {
            printf("%d\n", l496_lsm_odr_code((uint32_t)ARG(1)));
        } else if (!strcmp(c, "fs")) {
            printf("%d\n", l496_lsm_fs_code((uint8_t)ARG(1)));
        } else if (!strcmp(c, "sens")) {
            printf("%u\n", (unsigned)l496_lsm_sens_ug((uint8_t)ARG(1)));
        } else if (!strcmp(c, "poll")) {
            printf("%u\n", (unsigned)l496_lsm_poll_us((uint32_t)ARG(1)));
        } else if (!strcmp(c, "word")) {
            uint8_t w[7] = {0};
            for (int k = 0; k < 7 && a[1] && a[1][2 * k] && a[1][2 * k + 1]; k++) {
                char hx[3] = {a[1][2 * k], a[1][2 * k + 1], 0};
                w[k] = (uint8_t)strtoul(hx, NULL, 16);
            }
            int16_t xyz[3];
            if (l496_lsm_fifo_word(w, xyz)) printf("1 %d %d %d\n", xyz[0], xyz[1], xyz[2]);
            else puts("0");
        } else if (!strcmp(c, "level")) {
            int ovr;
            uint16_t lv = l496_lsm_fifo_level((uint8_t)ARG(1), (uint8_t)ARG(2), &ovr);
            printf("%u %d\n", lv, ovr);
        } else if (!strcmp(c, "resync")) {
            printf("%u\n", (unsigned)l496_lsm_resync_index((uint32_t)ARG(1), ARG(2), ARG(3), (uint32_t)ARG(4),
                                                           (uint16_t)ARG(5)));
        } else if (!strcmp(c, "cause")) {
            printf("%u\n", l496_reset_cause((uint32_t)ARG(1), (int)ARG(2), (uint8_t)ARG(3)));
        } else if (!strcmp(c, "rxavail")) {
            printf("%u\n", (unsigned)l496_rx_avail((uint32_t)ARG(1), (uint32_t)ARG(2), (uint32_t)ARG(3)));
        } else if (!strcmp(c, "chunk")) {
            printf("%u\n", (unsigned)l496_ring_chunk((uint32_t)ARG(1), (uint32_t)ARG(2), (uint32_t)ARG(3)));
        } else if (!strcmp(c, "reset")) {
            int mode = FAKE_I2C_PRESENT;
            if (n > 1 && !strcmp(a[1], "absent")) mode = FAKE_I2C_ABSENT;
            if (n > 1 && !strcmp(a[1], "stuck")) mode = FAKE_I2C_STUCK;
            reset_chip(mode);
            puts("ok");
        } else if (!strcmp(c, "stuck")) {
            static const struct {
                const char *name;
                unsigned bit;
            } F[] = {{"pll", FAKE_STUCK_PLL},   {"msi", FAKE_STUCK_MSI},         {"vosf", FAKE_STUCK_VOSF},
                     {"acr", FAKE_STUCK_ACR},   {"sws", FAKE_STUCK_SWS},         {"pllstop", FAKE_STUCK_PLLSTOP},
                     {"hsi", FAKE_STUCK_HSI}};
            unsigned bits = 0;
            int bad = 0;
            for (int k = 1; k < n; k++) {
                int found = !strcmp(a[k], "none");
                for (size_t f = 0; f < sizeof F / sizeof F[0]; f++)
                    if (!strcmp(a[k], F[f].name)) bits |= F[f].bit, found = 1;
                bad |= !found;
            }
            if (bad) {
                puts("ERR stuck");
            } else {
                fake.stuck = bits;
                puts("ok");
            }
        } else if (!strcmp(c, "switch")) {
            uint64_t t0 = fake.now_us;
            int rc = apply_hz((uint32_t)ARG(1));
            show_switch(rc, fake.now_us - t0);
        } else if (!strcmp(c, "hclk")) {
            printf("%u %u\n", (unsigned)l496_clock_hclk(), (unsigned)fake_hclk());
        } else if (!strcmp(c, "wait")) {
            fake.scratch_ready_at = fake.now_us + ARG(2);
            fake.jump_us = (uint32_t)ARG(3);
            fake.jump_countdown = fake.jump_us ? 2u : 0u;
            uint64_t t0 = fake.now_us;
            int rc = l496_wait(&l496_fake_scratch, 1u, 1u, (uint32_t)ARG(1));
            fake.jump_countdown = 0;
            printf("%d %llu\n", rc, (unsigned long long)(fake.now_us - t0));
        } else if (!strcmp(c, "enable")) {
            uint64_t t0 = fake.now_us;
            int rc = l496_i2c_enable((int)ARG(1));
            printf("%d %llu %lu\n", rc, (unsigned long long)(fake.now_us - t0), fake.violations);
        } else if (!strcmp(c, "xfer")) {
            static uint8_t w[300], r[300];
            size_t nw = (size_t)ARG(3), nr = (size_t)ARG(4);
            memset(w, 0, sizeof w);
            memset(r, 0, sizeof r);
            w[0] = (uint8_t)ARG(2);
            uint64_t t0 = fake.now_us;
            int rc = nw <= sizeof w && nr <= sizeof r ? l496_i2c_xfer((uint8_t)ARG(1), w, nw, r, nr) : -99;
            printf("%d %llu %lu\n", rc, (unsigned long long)(fake.now_us - t0), fake.violations);
            if (rc == 0 && nr) {
                for (size_t k = 0; k < nr; k++) printf("%02x", r[k]);
                puts("");
            }
        } else if (!strcmp(c, "stretch")) {
            fake.stretch_us = (uint32_t)ARG(1);
            puts("ok");
        } else if (!strcmp(c, "sdahold")) {
            fake.sda_hold = (uint32_t)ARG(1);
            puts("ok");
        } else if (!strcmp(c, "nackat")) {
            fake.nack_at = fake.i2c_starts + (unsigned long)ARG(1);
            puts("ok");
        } else if (!strcmp(c, "buserr")) {
            fake.berr_at = fake.i2c_starts + (unsigned long)ARG(1);
            puts("ok");
        } else if (!strcmp(c, "lsmreset")) {
            fake.swreset_len = (uint32_t)ARG(1);
            puts("ok");
        } else if (!strcmp(c, "lsmpoke")) {
            fake.lsm[ARG(1) & 0x7Fu] = (uint8_t)ARG(2);
            puts("ok");
        } else if (!strcmp(c, "lsmpeek")) {
            printf("%02x\n", fake.lsm[ARG(1) & 0x7Fu]);
        } else if (!strcmp(c, "state")) {
            printf("%u %u %lu %lu %lu\n", (unsigned)((l496_fake_rcc.CR >> 8) & 1u), (unsigned)(l496_fake_i2c1.CR1 & 1u),
                   fake.lsm_writes, fake.i2c_starts, fake.violations);
        } else if (!strcmp(c, "advance")) {
            fake.now_us += ARG(1);
            puts("ok");
        } else if (!strcmp(c, "bus")) {
            printf("%lu %lu %u %u %u %u %lu\n", fake.scl_pulses, fake.stops, (unsigned)fake.min_scl_low_us,
                   (unsigned)fake.min_scl_high_us, (unsigned)fake.min_stop_setup_us, fake.sda_hold ? 1u : 0u,
                   fake.violations);
        } else if (!strcmp(c, "tour")) {
            for (uint32_t x = 4; x <= 80; x++)
                for (uint32_t y = 4; y <= 80; y++) {
                    reset_chip(FAKE_I2C_PRESENT);
                    int rc = apply_hz(x * 1000000u);
                    if (!rc) rc = apply_hz(y * 1000000u);
                    printf("%u %u %d %u %u %u %u %lu\n", (unsigned)x, (unsigned)y, rc, (unsigned)l496_clock_hclk(),
                           (unsigned)fake_hclk(), (unsigned)((l496_fake_pwr.CR1 >> 9) & 3u),
                           (unsigned)(l496_fake_flash.ACR & 7u), fake.violations);
                }
        } else if (!strcmp(c, "probe")) {
            uint64_t t0 = fake.now_us;
            uint8_t who = l496_lsm_probe();
            printf("%u %llu %lu %lu %lu\n", who, (unsigned long long)(fake.now_us - t0), fake.i2c_starts, fake.resets,
                   fake.violations);
        } else if (!strcmp(c, "start")) {
            uint64_t t0 = fake.now_us;
            int rc = l496_lsm_start((uint32_t)ARG(1), (uint8_t)ARG(2));
            printf("%d %02x %02x %02x %02x %02x %llu\n", rc, fake.lsm[0x10], fake.lsm[0x09], fake.lsm[0x0A],
                   fake.lsm[0x12], fake.lsm[0x18], (unsigned long long)(fake.now_us - t0));
        } else if (!strcmp(c, "stop")) {
            l496_lsm_stop();
            printf("%02x %02x %u\n", fake.lsm[0x10], fake.lsm[0x0A], (unsigned)((l496_fake_rcc.CR >> 8) & 1u));
        } else if (!strcmp(c, "push")) {
            int16_t v[3] = {(int16_t)atoi(a[2] ? a[2] : "0"), (int16_t)atoi(a[3] ? a[3] : "0"),
                            (int16_t)atoi(a[4] ? a[4] : "0")};
            uint8_t w[7] = {(uint8_t)(ARG(1) << 3)};
            for (int k = 0; k < 3; k++) w[1 + 2 * k] = (uint8_t)v[k], w[2 + 2 * k] = (uint8_t)((uint16_t)v[k] >> 8);
            fake_fifo_push(w);
            puts("ok");
        } else if (!strcmp(c, "fill")) {
            int x0 = n > 2 ? atoi(a[2]) : 0;
            for (unsigned k = 0; k < (unsigned)ARG(1); k++) {
                int16_t x = (int16_t)(x0 + (int)k);
                uint8_t w[7] = {0x02u << 3, (uint8_t)x, (uint8_t)((uint16_t)x >> 8), 1, 0, 0xFF, 0x7F};
                fake_fifo_push(w);
            }
            puts("ok");
        } else if (!strcmp(c, "read")) {
            static int16_t xyz[1024][3];
            size_t max = (size_t)ARG(1);
            if (max > 1024) max = 1024;
            l496_lsm_status_t st;
            int got = l496_lsm_read(xyz, max, &st);
            printf("%d %d %u %d %d\n", got, st.fresh, st.level, st.overrun, st.more);
            for (int k = 0; k < got; k++) printf("%d %d %d\n", xyz[k][0], xyz[k][1], xyz[k][2]);
        } else if (!strcmp(c, "poke") || !strcmp(c, "peek")) {
            L496_REG *r = reg_named(a[1]);
            if (!r) {
                puts("ERR register");
            } else if (c[1] == 'o') {
                l496_wr(r, (uint32_t)ARG(2));
                puts("ok");
            } else {
                printf("%08x\n", (unsigned)l496_rd(r));
            }
        } else if (!strcmp(c, "timing")) {
            printf("%08x\n", (unsigned)l496_i2c_timing_in_use());
        } else {
            board_commands(a, n, c);
        }
        fflush(stdout);
    }
    return 0;
}
