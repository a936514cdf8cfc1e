/*
 * ODL firmware: constants of protocol v1 (docs/protocol.md) and small helpers shared by the core.
 * The core is C11, freestanding apart from <string.h>/<math.h>, and allocates nothing after start-up:
 * every buffer is static or carved from the one arena (store.c).
 */
#ifndef ODL_H
#define ODL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ODL_FW_MAJOR 1
#define ODL_FW_MINOR 1
#define ODL_FW_PATCH 0
#define ODL_PROTOCOL 2     /* v2 = v1 + the robust round (TRAIN_START extension, VAL_REPORT) */
#define ODL_PROTOCOL_MIN 1 /* a v1 host is served as before */
#define TRAIN_START_V2_LEN 44u

#define ODL_MAX_PAYLOAD 1024u
#define ODL_HEADER_LEN 5u
#define ODL_MAX_BODY (ODL_HEADER_LEN + ODL_MAX_PAYLOAD + 2u)       /* 1031 */
#define ODL_MAX_ENC (ODL_MAX_BODY + 1u + ODL_MAX_BODY / 254u)      /* 1036, COBS bound */
#define ODL_SEQ_UNATTRIBUTED 0xFFFFu
#define ODL_MAX_ERROR_TEXT 200u
#define ODL_MAX_BLOCK_SAMPLES 160u
#define ODL_MAX_CLASSES_EVAL 22u
#define ODL_SRAM_BYTES 327680u /* STM32L496: 320 KiB */
#define ODL_TICK_HZ 1000000u
#define ODL_SYSCLK_MIN 4000000u
#define ODL_SYSCLK_MAX 80000000u

/* Message types (docs/protocol.md §3). */
enum {
    T_HELLO = 0x01, T_PING = 0x02, T_GET_INFO = 0x03, T_RESET = 0x04, T_SET_CLOCK = 0x05, T_GET_STATUS = 0x06,
    T_SET_MARKER = 0x07, T_SENSOR_CONFIG = 0x10, T_STREAM_START = 0x11, T_STREAM_STOP = 0x12, T_GET_SENSOR = 0x13,
    T_MODEL_BEGIN = 0x20, T_MODEL_CHUNK = 0x21, T_MODEL_END = 0x22, T_DATA_CLEAR = 0x30, T_DATA_BEGIN = 0x31,
    T_DATA_CHUNK = 0x32, T_DATA_END = 0x33, T_TRAIN_START = 0x40, T_TRAIN_ABORT = 0x41, T_EVALUATE = 0x50,
    T_WEIGHTS_INFO = 0x60, T_WEIGHTS_READ = 0x61, T_SIM_SET_ACTIVITY = 0x68, T_SIM_GET_ACTIVITY = 0x69,
    T_ACK = 0x80, T_HELLO_RSP = 0x81, T_PONG = 0x82, T_INFO = 0x83, T_CLOCK = 0x85, T_STATUS = 0x86,
    T_SENSOR_STATE = 0x90, T_XFER_ACK = 0xA0, T_MODEL_INFO = 0xA2, T_DATA_STATE = 0xB0, T_ROUND_INFO = 0xC0,
    T_WEIGHTS_META = 0xE0, T_WEIGHTS_DATA = 0xE1, T_ACTIVITY = 0xE8,
    T_SAMPLES = 0xF0, T_BATCH_REPORT = 0xF1, T_ROUND_DONE = 0xF2, T_LOG = 0xF3, T_BOOT = 0xF4, T_EVAL_RESULT = 0xF5,
    T_VAL_REPORT = 0xF6,
    T_ERROR = 0xFF,
};

/* Error codes (docs/protocol.md §3.5). */
enum {
    E_BAD_CRC = 1, E_BAD_FRAME = 2, E_UNKNOWN_TYPE = 3, E_BAD_PAYLOAD = 4, E_BAD_VERSION = 5, E_BUSY = 6,
    E_OUT_OF_RAM = 7, E_UNKNOWN_LAYER = 8, E_NO_MODEL = 9, E_NO_DATA = 10, E_BAD_STATE = 11, E_BAD_OFFSET = 12,
    E_BLOB_CRC = 13, E_UNSUPPORTED = 14, E_BAD_PARAM = 15, E_TOO_LARGE = 16, E_INTERNAL = 17,
};

/* Board states (STATUS.state). */
enum { S_IDLE = 0, S_STREAMING = 1, S_TRAINING = 2, S_TRANSFER = 3, S_EVALUATING = 4 };

/* --- little-endian access (the wire and the blobs are little-endian) --------------------------- */
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static inline float rdf32(const uint8_t *p) {
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}
static inline void wrf32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(p, u);
}

/* A payload being built: bounded appends (overflow is a firmware bug and truncates). */
typedef struct {
    uint8_t *p;
    uint16_t len, cap;
} odl_buf;

static inline void b_u8(odl_buf *b, uint8_t v) {
    if (b->len + 1u <= b->cap) b->p[b->len++] = v;
}
static inline void b_u16(odl_buf *b, uint16_t v) {
    if (b->len + 2u <= b->cap) wr16(b->p + b->len, v), b->len += 2;
}
static inline void b_u32(odl_buf *b, uint32_t v) {
    if (b->len + 4u <= b->cap) wr32(b->p + b->len, v), b->len += 4;
}
static inline void b_u64(odl_buf *b, uint64_t v) {
    if (b->len + 8u <= b->cap) wr64(b->p + b->len, v), b->len += 8;
}
static inline void b_f32(odl_buf *b, float v) {
    if (b->len + 4u <= b->cap) wrf32(b->p + b->len, v), b->len += 4;
}
static inline void b_bytes(odl_buf *b, const void *d, size_t n) {
    if (n > (size_t)(b->cap - b->len)) n = (size_t)(b->cap - b->len);
    memcpy(b->p + b->len, d, n);
    b->len = (uint16_t)(b->len + n);
}
/* char[N], NUL-padded */
static inline void b_str(odl_buf *b, const char *s, size_t n) {
    size_t k = s ? strlen(s) : 0;
    if (k > n) k = n;
    if ((size_t)(b->cap - b->len) < n) return;
    memset(b->p + b->len, 0, n);
    memcpy(b->p + b->len, s, k);
    b->len = (uint16_t)(b->len + n);
}

/* Code that exists only for the simulation (QEMU bench link, pacing, cycle-counter reads) lives in
 * this section; the cycle model does not count it (docs/firmware.md). */
#if defined(ODL_TARGET_QEMU)
#define ODL_SIMONLY __attribute__((section(".simonly"), noinline))
#else
#define ODL_SIMONLY
#endif

#define ODL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
