/*
 * Board support for QEMU mps2-an386, the virtual bench's board (docs/firmware.md, "The QEMU board").
 *
 * - Protocol link: what the host sends arrives in the file odl-in0.bin, what the firmware sends goes to
 *   the pipe odl-out0.fifo, both through Arm semihosting (see "Why not the UARTs" below).
 * - Bench link (device/nucleo/qemu_board.py): the firmware sends records to odl-out1.fifo: its D7 edges,
 *   run/idle state, sensor set-up and clock with its own timestamps; the bench answers time requests and
 *   plays the accelerometer samples into odl-in1.bin.  Records: type u8, len u8, payload.  The bench
 *   answers each R_BOOT with R_SYNC first: what precedes it in odl-in1.bin belongs to the previous boot.
 * - Why not the UARTs: QEMU 7.2's CMSDK UART holds one byte each way and leans on QEMU's main loop to
 *   move the next one: a received byte is only fetched from the backend on an unrelated main-loop event
 *   (which never comes while the CPU sleeps), and a transmit that meets a busy backend can stay pending
 *   the same way; both stalled the link in testing.  Semihosting calls are synchronous, take any amount
 *   at once, and the pipe gives the bench's reader natural back-pressure.
 * - Sleeping: with nothing to do, the CPU blocks in a semihosting read of the pipe odl-wake.fifo, into
 *   which the bench writes a byte after every input (QEMU's timers do not reliably wake a WFI under
 *   -icount).  Blocked, QEMU uses no host CPU.
 * - Cycles: modelled Cortex-M4 cycles from the odl_cycles QEMU plugin, read through semihosting
 *   (the plugin rewrites the file odl-cycles.bin before every BKPT); instructions / 25 MHz counter
 *   fallback when QEMU runs without the plugin.
 * - Time: 1 MHz ticks = modelled cycles / SYSCLK while the CPU runs; while it sleeps, time is the
 *   bench's (synchronised when the CPU wakes).  So a batch lasts exactly its modelled cycles.
 * Everything that exists only for the simulation is in the .simonly section, which the cycle model
 * does not count.
 */
#include <stdio.h>
#include <string.h>

#include "../../core/board.h"
#include "../../core/odl.h"
#include "../common/cm4.h"

#define FPGAIO_COUNTER REG32(0x40028018u)
#define FPGAIO_PRESCALE REG32(0x4002801Cu)

#define DEFAULT_SYSCLK 8000000u
#define SLACK_US 20000u    /* the CPU may run this far ahead of the bench before it waits */
#define PROGRESS_US 5000u  /* while running, tell the bench how far the CPU got this often */

/* bench link records */
enum {
    R_BOOT = 0x01, R_TIME_REQ = 0x02, R_PACE = 0x03, R_MARK = 0x04, R_JOB = 0x05, R_SENSOR = 0x06,
    R_CLOCK = 0x07, R_IDLE = 0x08, R_PROGRESS = 0x09, R_SIM_REQ = 0x0A,
    R_TIME = 0x81, R_SAMPLES = 0x82, R_SIM_RSP = 0x83, R_SYNC = 0x84,
};

static const board_info_t INFO = {"NUCLEO-L496ZG", "STM32L496ZG", "qemu-mps2-an386", 0x461, 0x1000, 1024u * 1024u, 1};

/* ---------------- semihosting ---------------- */
/* Simulation-only code must not call into counted code: the cycle plugin excludes the .simonly range by PC,
 * so a memcpy or a libgcc division called from here would be counted, as often as the host's timing makes
 * the bench handshakes happen (tests/device/test_firmware_qemu.py checks that no call leaves .simonly). */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) ODL_SIMONLY static void sim_move(void *dst, const void *src,
                                                                                                uint32_t n) {
    volatile uint8_t *d = dst;
    const volatile uint8_t *s = src;
    if (d < s)
        for (uint32_t i = 0; i < n; i++) d[i] = s[i];
    else
        for (uint32_t i = n; i-- > 0;) d[i] = s[i];
}

ODL_SIMONLY static uint64_t sim_udiv64(uint64_t a, uint64_t b) { /* shift and subtract: no __aeabi_uldivmod */
    uint64_t q = 0, r = 0;
    for (int i = 63; i >= 0; i--) {
        r = (r << 1) | ((a >> i) & 1u);
        if (r >= b) {
            r -= b;
            q |= 1ull << i;
        }
    }
    return q;
}

ODL_SIMONLY static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

ODL_SIMONLY static int sh_open(const char *name, uint32_t len) {
    uint32_t a[3] = {(uint32_t)name, 1 /* rb */, len};
    return semihost(0x01, a);
}

ODL_SIMONLY static long sh_flen(int fd) {
    uint32_t a[1] = {(uint32_t)fd};
    return semihost(0x0C, a);
}

/* read n bytes at offset off; returns the bytes read */
ODL_SIMONLY static uint32_t sh_read_at(int fd, uint32_t off, void *buf, uint32_t n) {
    uint32_t s[2] = {(uint32_t)fd, off};
    uint32_t r[3] = {(uint32_t)fd, (uint32_t)buf, n};
    if (semihost(0x0A, s) != 0) return 0;
    int left = semihost(0x06, r);
    return left < 0 ? 0 : n - (uint32_t)left;
}

/* An append-only input file written by the bench, read from `off` on. */
typedef struct {
    const char *name;
    uint32_t name_len;
    int fd;
    uint32_t off;
} infile_t;

static infile_t in0 = {"odl-in0.bin", 11, -1, 0}, in1 = {"odl-in1.bin", 11, -1, 0};

ODL_SIMONLY static uint32_t in_avail(infile_t *f) {
    if (f->fd < 0) {
        f->fd = sh_open(f->name, f->name_len);
        if (f->fd < 0) return 0;
        long n = sh_flen(f->fd);
        f->off = n > 0 ? (uint32_t)n : 0; /* what was sent before this boot is lost, as on a UART */
    }
    long n = sh_flen(f->fd);
    return n > (long)f->off ? (uint32_t)n - f->off : 0;
}

ODL_SIMONLY static uint32_t in_read(infile_t *f, uint8_t *buf, uint32_t max) {
    uint32_t n = in_avail(f);
    if (n > max) n = max;
    if (!n) return 0;
    n = sh_read_at(f->fd, f->off, buf, n);
    f->off += n;
    return n;
}

/* Output pipes created by the bench (opened for appending: semihosting mode "ab"). */
ODL_SIMONLY static int out_fd(int *fd, const char *name, uint32_t len) {
    if (*fd < 0) {
        uint32_t a[3] = {(uint32_t)name, 9 /* ab */, len};
        *fd = semihost(0x01, a);
    }
    return *fd;
}

ODL_SIMONLY static void sh_write(int fd, const void *p, uint32_t n) {
    if (fd < 0 || !n) return;
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)p, n};
    semihost(0x05, a);
}

static int out0 = -1, out1 = -1;

/* ---------------- protocol link ---------------- */
ODL_SIMONLY static size_t link_read_sim(uint8_t *buf, size_t max) { return in_read(&in0, buf, (uint32_t)max); }
ODL_SIMONLY static void link_write_sim(const uint8_t *buf, size_t n) {
    sh_write(out_fd(&out0, "odl-out0.fifo", 13), buf, (uint32_t)n);
}

size_t board_link_read(uint8_t *buf, size_t max) { return link_read_sim(buf, max); }

size_t board_link_write(const uint8_t *buf, size_t n) {
    link_write_sim(buf, n);
    return n;
}

size_t board_link_tx_free(void) { return 4096u; }

/* ---------------- bench link ---------------- */
#define SIM_BUF 512u
static uint8_t sim_buf[SIM_BUF];
static uint32_t sim_len;

ODL_SIMONLY static void sim_send(uint8_t type, const uint8_t *p, uint8_t len) {
    uint8_t rec[2 + 255];
    rec[0] = type;
    rec[1] = len;
    sim_move(rec + 2, p, len);
    sh_write(out_fd(&out1, "odl-out1.fifo", 13), rec, 2u + len);
}

/* Sleep until the bench has written input: a blocking read of the doorbell pipe (the bench writes a byte
 * there after everything it appends to odl-in0.bin / odl-in1.bin). */
static int wake_fd = -1;

ODL_SIMONLY static void nap(void) {
    if (wake_fd < 0) wake_fd = sh_open("odl-wake.fifo", 13);
    if (wake_fd < 0) return;
    uint8_t b[64];
    uint32_t r[3] = {(uint32_t)wake_fd, (uint32_t)b, sizeof b};
    /* SYS_READ returns the bytes NOT read: all of them is end of file.  The bench holds the doorbell's writer
     * end for as long as it runs, so that means the bench is gone (killed, crashed) without stopping QEMU: end
     * the simulation (SYS_EXIT, ADP_Stopped_ApplicationExit) instead of napping on a pipe that never blocks
     * again, which spun an orphaned QEMU at full speed until someone killed it. */
    if (semihost(0x06, r) == (int)sizeof b) semihost(0x18, (void *)0x20026u);
}

/* ---------------- cycles: the odl_cycles plugin through semihosting ---------------- */
static int semi_fd = -1; /* -1 not tried, -2 unavailable */

ODL_SIMONLY static uint64_t read_cycles(void) {
    if (semi_fd == -1) {
        static const char name[] = "odl-cycles.bin";
        semi_fd = sh_open(name, sizeof name - 1);
        if (semi_fd < 0) semi_fd = -2;
    }
    if (semi_fd >= 0) {
        uint32_t s[2] = {(uint32_t)semi_fd, 0};
        uint8_t b[16];
        uint32_t r[3] = {(uint32_t)semi_fd, (uint32_t)b, sizeof b};
        if (semihost(0x0A, s) == 0 && semihost(0x06, r) == 0 && rd32(b) == 0x43594C4Fu) return rd64(b + 8);
    }
    /* no plugin: one instruction = one cycle (icount: the 25 MHz counter advances every 40 instructions) */
    static uint32_t last;
    static uint64_t ext;
    uint32_t c = FPGAIO_COUNTER;
    ext += (uint32_t)(c - last);
    last = c;
    return ext * 40u;
}

/* ---------------- time ---------------- */
static uint32_t sysclk = DEFAULT_SYSCLK;
static uint64_t tick_base, cyc_base; /* ticks = tick_base + (cycles - cyc_base) / sysclk */
static uint64_t bench_known;         /* latest bench time received */
static uint64_t last_progress;
static uint8_t awake, job_running;
static uint8_t cause;
static char boot_msg[120];

uint64_t board_cycles(void) { return read_cycles(); }

ODL_SIMONLY static uint64_t ticks_at(uint64_t c) { return tick_base + sim_udiv64((c - cyc_base) * 1000000ull, sysclk); }

uint64_t board_ticks(void) { return ticks_at(read_cycles()); }

ODL_SIMONLY static void sync_to(uint64_t bench) {
    uint64_t c = read_cycles();
    uint64_t t = ticks_at(c);
    if (bench > t) { /* the CPU slept meanwhile: its clock catches up with the bench */
        tick_base = bench;
        cyc_base = c;
    }
    if (bench > bench_known) bench_known = bench;
}

ODL_SIMONLY static void put64(uint8_t *p, uint64_t v) { wr64(p, v); }

ODL_SIMONLY static void send_tick(uint8_t type) {
    uint8_t p[8];
    put64(p, board_ticks());
    sim_send(type, p, 8);
}

/* ---------------- sensor samples from the bench ---------------- */
#define S_RING 256u
static int16_t s_ring[S_RING][3];
static uint32_t s_head, s_tail; /* sample indices since board_sensor_start */
static uint64_t s_t0;
static uint8_t s_on;
static uint32_t s_odr = 26000;
static uint8_t s_fs = 2;
static uint16_t s_epoch; /* which sensor start the bench's samples belong to */

/* SIM replies */
static uint8_t sim_rsp[256];
static int sim_rsp_len;
static uint8_t sim_rsp_ready, time_ready;

/* Records before the bench's R_SYNC answer to this boot's R_BOOT were written for the previous boot: the
 * bench may append samples or time answers between the reset and reading R_BOOT, and their times count
 * from the old boot (a sample 10 s into the old boot would put this boot's clock 10 s ahead of the bench,
 * and its next sensor stream would start 10 s late).  They are dropped. */
static uint8_t synced;

/* Handle every complete record from the bench; returns how many. */
ODL_SIMONLY static int sim_process(void) {
    int handled = 0;
    sim_len += in_read(&in1, sim_buf + sim_len, SIM_BUF - sim_len);
    uint32_t pos = 0;
    for (;; handled++) {
        uint32_t avail = sim_len - pos;
        if (avail < 2) break;
        uint8_t type = sim_buf[pos];
        uint8_t len = sim_buf[pos + 1];
        if (avail < 2u + len) break;
        const uint8_t *p = sim_buf + pos + 2;
        pos += 2u + len;
        if (!synced) {
            synced = type == R_SYNC;
            continue;
        }
        if (type == R_TIME && len >= 8) {
            sync_to(job_running ? 0 : rd64(p)); /* while running, time is the CPU's own */
            if (job_running && rd64(p) > bench_known) bench_known = rd64(p);
            time_ready = 1;
        } else if (type == R_SAMPLES && len >= 15) {
            uint16_t ep = rd16(p + 8);
            uint32_t first = rd32(p + 10);
            uint8_t n = p[14];
            if (!job_running) sync_to(rd64(p));
            if (ep != s_epoch || !s_on || len < 15u + 6u * n) continue;
            for (uint8_t i = 0; i < n; i++) {
                uint32_t idx = first + i;
                if (idx != s_head) continue;           /* duplicates / gaps: keep the sequence */
                if (s_head - s_tail >= S_RING) s_tail++; /* the FIFO overflows: oldest sample lost */
                for (int k = 0; k < 3; k++) s_ring[idx % S_RING][k] = (int16_t)rd16(p + 15 + 6 * i + 2 * k);
                s_head++;
            }
        } else if (type == R_SIM_RSP && len >= 1) {
            sim_rsp_len = (int8_t)p[0] >= 0 ? (int)(len - 1) : (int8_t)p[0];
            sim_move(sim_rsp, p + 1, (uint32_t)len - 1);
            sim_rsp[len - 1] = 0;
            sim_rsp_ready = 1;
        }
    }
    if (pos) {
        sim_move(sim_buf, sim_buf + pos, sim_len - pos);
        sim_len -= pos;
    }
    return handled;
}

/* Sleep until the bench sends what `flag` waits for. */
ODL_SIMONLY static void wait_bench(volatile uint8_t *flag) {
    for (;;) {
        sim_process();
        if (*flag) return;
        nap();
    }
}

ODL_SIMONLY static void time_request(void) {
    time_ready = 0;
    send_tick(R_TIME_REQ);
    wait_bench(&time_ready);
}

/* ---------------- board interface ---------------- */
ODL_SIMONLY void board_init(void) {
    cause = cm4_take_reset_cause(boot_msg, sizeof boot_msg);
    FPGAIO_PRESCALE = 0; /* 25 MHz counter: the no-plugin fallback */
    out0 = out1 = wake_fd = -1; /* reopened after a reset */
    in0.fd = in1.fd = -1;
    (void)in_avail(&in0);
    (void)in_avail(&in1);
    sim_len = 0;
    synced = 0; /* until the bench's R_SYNC: see sim_process */
    cm4_enable_irq();
    sysclk = DEFAULT_SYSCLK;
    tick_base = 0;
    cyc_base = read_cycles();
    uint8_t p[5] = {ODL_FW_MAJOR, ODL_FW_MINOR, ODL_FW_PATCH, cause, 0};
    sim_send(R_BOOT, p, 5);
    time_request();
    awake = 1;
}

const board_info_t *board_get_info(void) { return &INFO; }
uint8_t board_reset_cause(void) { return cause; }
const char *board_boot_message(void) { return boot_msg; }

void board_reset(uint8_t c) { cm4_reset_with_cause(c); /* semihosting output is already delivered */ }

uint32_t board_sysclk(void) { return sysclk; }

uint32_t board_set_sysclk(uint32_t hz) {
    uint64_t c = read_cycles();
    tick_base = ticks_at(c);
    cyc_base = c;
    sysclk = hz;
    uint8_t p[12];
    put64(p, tick_base);
    wr32(p + 8, hz);
    sim_send(R_CLOCK, p, 12);
    return hz;
}

void board_marker_pulse(uint32_t pulse_us) {
    (void)pulse_us;
    send_tick(R_MARK);
}

ODL_SIMONLY void board_job_state(int running) {
    uint8_t p[9];
    put64(p, board_ticks());
    p[8] = (uint8_t)(running ? 1 : 0);
    job_running = (uint8_t)(running ? 1 : 0);
    sim_send(R_JOB, p, 9);
    if (running) {
        awake = 1;
        last_progress = rd64(p);
    }
}

ODL_SIMONLY void board_idle(void) {
    int records = sim_process(); /* samples from the bench carry its time */
    if (!records && !in_avail(&in0)) {
        if (awake) {
            send_tick(R_IDLE); /* asleep from now until there is input */
            awake = 0;
        }
        nap();
        records = sim_process();
    }
    if (!awake && in_avail(&in0)) {
        time_request(); /* woken by the host: take the bench's time */
        awake = 1;
    } else if (!awake && records) {
        awake = 1;
    }
}

/* Between steps of a round: report progress and keep the CPU at most SLACK_US ahead of the bench. */
ODL_SIMONLY void board_poll(void) {
    sim_process();
    uint64_t t = board_ticks();
    if (t - last_progress >= PROGRESS_US) {
        send_tick(R_PROGRESS);
        last_progress = t;
    }
    while (t > bench_known + SLACK_US) {
        time_ready = 0;
        uint8_t p[8];
        put64(p, t);
        sim_send(R_PACE, p, 8);
        wait_bench(&time_ready);
    }
}

uint8_t board_sensor_whoami(void) { return 0x6C; }

ODL_SIMONLY static void sensor_record(uint8_t on) {
    uint8_t p[16];
    put64(p, board_ticks());
    wr32(p + 8, s_odr);
    p[12] = s_fs;
    p[13] = on;
    wr16(p + 14, s_epoch);
    sim_send(R_SENSOR, p, 16);
}

int board_sensor_config(uint32_t odr_mhz, uint8_t fs_g) {
    s_odr = odr_mhz;
    s_fs = fs_g;
    sensor_record(s_on);
    return 0;
}

int board_sensor_start(void) {
    s_epoch++;
    s_head = s_tail = 0;
    s_t0 = board_ticks();
    s_on = 1;
    sensor_record(1);
    return 0;
}

void board_sensor_stop(void) {
    s_on = 0;
    sensor_record(0);
}

size_t board_sensor_read(int16_t (*xyz)[3], size_t max, uint32_t *index, uint64_t *t0) {
    sim_process();
    size_t n = 0;
    *index = s_tail;
    *t0 = s_t0;
    while (n < max && s_tail != s_head) {
        xyz[n][0] = s_ring[s_tail % S_RING][0];
        xyz[n][1] = s_ring[s_tail % S_RING][1];
        xyz[n][2] = s_ring[s_tail % S_RING][2];
        s_tail++;
        n++;
    }
    return n;
}

ODL_SIMONLY int board_sim_request(uint8_t type, const uint8_t *payload, uint16_t len, uint8_t *out, uint16_t cap) {
    uint8_t p[64];
    p[0] = type;
    if (len > sizeof p - 1) len = sizeof p - 1;
    sim_move(p + 1, payload, len);
    sim_rsp_ready = 0;
    sim_send(R_SIM_REQ, p, (uint8_t)(len + 1));
    wait_bench(&sim_rsp_ready);
    if (sim_rsp_len < 0) {
        uint32_t m = 0;
        while (m + 1u < cap && m < sizeof sim_rsp && sim_rsp[m]) m++;
        sim_move(out, sim_rsp, m);
        out[m] = 0;
        return sim_rsp_len == -1 ? -1 : -2;
    }
    if ((uint16_t)sim_rsp_len > cap) sim_rsp_len = cap;
    sim_move(out, sim_rsp, (uint32_t)sim_rsp_len);
    return sim_rsp_len;
}
