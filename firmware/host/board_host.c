/*
 * Native (host) board: the portable core runs as an ordinary process and serves protocol v1 on a
 * loopback TCP port, so the host-side test suite can speak to the C core exactly as it speaks to any
 * board (`socket://127.0.0.1:PORT`).  Time is the process's monotonic clock; the accelerometer is a
 * deterministic synthetic signal; the D7 marker is counted.  Built with -fsanitize=address,undefined in
 * the tests.
 *
 *   odl-host [--port N]     prints "PORT <n>" on stdout once listening (N = 0: any free port)
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../core/board.h"
#include "../core/proto.h"

static int lsock = -1, csock = -1;
static struct timespec t_boot;
static uint32_t sysclk = 80000000u;
static uint8_t cause;
static jmp_buf reset_env;
static uint32_t odr_mhz = 26000;
static uint8_t fs_g = 2;
static int streaming;
static uint64_t stream_t0;
static uint32_t next_sample;
static unsigned long markers;

static const board_info_t INFO = {"host", "x86-64", "host-native", 0x461, 0x1000, 0, 1};

void board_init(void) {}
const board_info_t *board_get_info(void) { return &INFO; }
uint8_t board_reset_cause(void) { return cause; }
const char *board_boot_message(void) { return ""; }
void board_reset(uint8_t c) {
    cause = c;
    longjmp(reset_env, 1);
}

static void accept_client(int timeout_ms) {
    struct pollfd p = {lsock, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) > 0 && (p.revents & POLLIN)) {
        int s = accept(lsock, NULL, NULL);
        if (s >= 0) {
            if (csock >= 0) close(csock); /* newest client wins, as on the bench */
            csock = s;
            int one = 1;
            setsockopt(csock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
    }
}

size_t board_link_read(uint8_t *buf, size_t max) {
    accept_client(0);
    if (csock < 0) return 0;
    struct pollfd p = {csock, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    ssize_t n = recv(csock, buf, max, 0);
    if (n <= 0) {
        close(csock);
        csock = -1;
        return 0;
    }
    return (size_t)n;
}

size_t board_link_write(const uint8_t *buf, size_t n) {
    if (csock < 0) return n; /* nobody listening: the bytes are lost, as on a UART */
    ssize_t w = send(csock, buf, n, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        close(csock);
        csock = -1;
        return n;
    }
    return (size_t)w;
}

size_t board_link_tx_free(void) { return 1u << 20; }

uint64_t board_ticks(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)(t.tv_sec - t_boot.tv_sec) * 1000000ull + (uint64_t)((t.tv_nsec - t_boot.tv_nsec) / 1000);
}
uint64_t board_cycles(void) { return board_ticks() * (sysclk / 1000000u); }
uint32_t board_sysclk(void) { return sysclk; }
uint32_t board_set_sysclk(uint32_t hz) { return sysclk = hz; }
void board_marker_pulse(uint32_t us) {
    (void)us;
    markers++;
}
void board_idle(void) {
    struct pollfd p[2] = {{lsock, POLLIN, 0}, {csock, POLLIN, 0}};
    poll(p, csock >= 0 ? 2 : 1, streaming ? 2 : 20);
}
void board_poll(void) {}
void board_job_state(int running) { (void)running; }

uint8_t board_sensor_whoami(void) { return 0x6C; }
int board_sensor_config(uint32_t odr, uint8_t fs) {
    odr_mhz = odr;
    fs_g = fs;
    return 0;
}
int board_sensor_start(void) {
    streaming = 1;
    stream_t0 = board_ticks();
    next_sample = 0;
    return 0;
}
void board_sensor_stop(void) { streaming = 0; }
size_t board_sensor_read(int16_t (*xyz)[3], size_t max, uint32_t *index, uint64_t *t0) {
    if (!streaming) return 0;
    uint64_t due = (board_ticks() - stream_t0) * odr_mhz / 1000000000ull;
    size_t n = 0;
    *index = next_sample;
    *t0 = stream_t0;
    const double counts_per_g = 16393.0 * 2 / fs_g; /* LSM6DSO: 0.061 mg/LSB at +-2 g, doubling per range */
    while (n < max && next_sample < due) {
        double t = next_sample * 1000.0 / odr_mhz;
        xyz[n][0] = (int16_t)(0.122 * counts_per_g * sin(2 * M_PI * 1.7 * t));
        xyz[n][1] = (int16_t)(0.061 * counts_per_g * cos(2 * M_PI * 0.9 * t));
        xyz[n][2] = (int16_t)counts_per_g; /* gravity: 1 g on z */
        n++;
        next_sample++;
    }
    return n;
}

int board_sim_request(uint8_t type, const uint8_t *p, uint16_t len, uint8_t *out, uint16_t cap) {
    (void)type, (void)p, (void)len, (void)out, (void)cap;
    return -1;
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
    signal(SIGPIPE, SIG_IGN);
    lsock = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(lsock, (struct sockaddr *)&a, sizeof a) || listen(lsock, 4)) {
        perror("odl-host: listen");
        return 2;
    }
    socklen_t al = sizeof a;
    getsockname(lsock, (struct sockaddr *)&a, &al);
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t_boot);
    setjmp(reset_env); /* board_reset() comes back here */
    streaming = 0; /* a reset restores what power-on set */
    sysclk = 80000000u;
    odr_mhz = 26000;
    fs_g = 2;
    odl_init();
    for (;;)
        if (!odl_poll()) board_idle();
}
