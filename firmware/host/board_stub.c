/* A board for the host harnesses (odl-kernels, odl-fuzz): the link reads from a buffer the harness fills
 * and checks every frame the core sends; time advances by a fixed step per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/board.h"
#include "../core/wire.h"
#include "stub.h"

static const board_info_t INFO = {"stub", "host", "host-stub", 0x461, 0x1000, 0, 1};
static uint64_t now_ticks;
static uint32_t sysclk = 80000000u;

stub_link_t stub;

void board_init(void) {}
const board_info_t *board_get_info(void) { return &INFO; }
uint8_t board_reset_cause(void) { return 0; }
const char *board_boot_message(void) { return ""; }
void board_reset(uint8_t cause) {
    (void)cause;
    stub.resets++;
    longjmp(stub.reset_env, 1);
}

size_t board_link_read(uint8_t *buf, size_t max) {
    size_t n = stub.in_len - stub.in_pos;
    if (n > max) n = max;
    if (n > stub.chunk && stub.chunk) n = stub.chunk;
    memcpy(buf, stub.in + stub.in_pos, n);
    stub.in_pos += n;
    return n;
}

/* Every byte the core sends goes through a decoder: a frame that fails its own CRC is a firmware bug. */
size_t board_link_write(const uint8_t *buf, size_t n) {
    const uint8_t *p = buf;
    size_t left = n;
    while (left) {
        int ev = frame_dec_feed(&stub.out_dec, &p, &left);
        if (ev == FD_BAD_CRC || ev == FD_BAD_FRAME) {
            fprintf(stderr, "FIRMWARE BUG: the core sent a malformed frame\n");
            abort();
        }
        if (ev == FD_FRAME) {
            stub.frames_out++;
            if (stub.on_frame) stub.on_frame(&stub.out_dec);
        }
    }
    return n;
}

size_t board_link_tx_free(void) { return stub.tx_free; }
uint64_t board_ticks(void) { return now_ticks += 10; }
uint64_t board_cycles(void) { return now_ticks * 80; }
uint32_t board_sysclk(void) { return sysclk; }
uint32_t board_set_sysclk(uint32_t hz) { return sysclk = hz; }
void board_marker_pulse(uint32_t us) { (void)us; }
void board_idle(void) {}
void board_poll(void) {}
void board_job_state(int running) { (void)running; }
uint8_t board_sensor_whoami(void) { return 0x6C; }
int board_sensor_config(uint32_t odr, uint8_t fs) {
    (void)odr, (void)fs;
    return 0;
}
int board_sensor_start(void) { return 0; }
void board_sensor_stop(void) {}
size_t board_sensor_read(int16_t (*xyz)[3], size_t max, uint32_t *index, uint64_t *t0) {
    static uint32_t k;
    size_t n = max < 3 ? max : 3;
    for (size_t i = 0; i < n; i++) xyz[i][0] = (int16_t)k, xyz[i][1] = (int16_t)(k * 7), xyz[i][2] = 16000;
    *index = k;
    *t0 = 0;
    k += (uint32_t)n;
    return n;
}
int board_sim_request(uint8_t type, const uint8_t *p, uint16_t len, uint8_t *out, uint16_t cap) {
    (void)type, (void)p, (void)len, (void)out, (void)cap;
    return -1;
}
