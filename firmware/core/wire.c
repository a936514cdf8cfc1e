#include "wire.h"

/* Nibble tables (in flash): 16 entries each instead of 256. */
static const uint16_t CRC16_T[16] = {0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
                                     0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF};
static const uint32_t CRC32_T[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
                                     0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                     0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 (check "123456789" = 0x29B1). */
uint16_t crc16_ccitt(const uint8_t *p, size_t n, uint16_t crc) {
    for (size_t i = 0; i < n; i++) {
        crc = (uint16_t)((crc << 4) ^ CRC16_T[((crc >> 12) ^ (p[i] >> 4)) & 0xFu]);
        crc = (uint16_t)((crc << 4) ^ CRC16_T[((crc >> 12) ^ (p[i] & 0xFu)) & 0xFu]);
    }
    return crc;
}

/* CRC-32/ISO-HDLC (zlib): reflected poly 0xEDB88320, init/xorout 0xFFFFFFFF (check 0xCBF43926). */
uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc = (crc >> 4) ^ CRC32_T[(crc ^ p[i]) & 0xFu];
        crc = (crc >> 4) ^ CRC32_T[(crc ^ ((uint32_t)p[i] >> 4)) & 0xFu];
    }
    return ~crc;
}

/* Plain COBS (docs/protocol.md §1): a full run of 254 non-zero bytes is coded 0xFF with no implied zero;
 * data ending in a zero gets one empty trailing block (01).  Same bytes as device/nucleo/cobs.py. */
typedef struct {
    uint8_t blk[255];
    uint16_t n;
    uint8_t after_zero, any;
    size_t written;
    uint8_t *dst; /* buffer mode */
    size_t cap;
    int overflow;
    wire_out_fn out; /* stream mode */
} cobs_enc_t;

static void enc_emit(cobs_enc_t *e, const uint8_t *p, size_t n) {
    if (e->dst) {
        if (e->written + n > e->cap) {
            e->overflow = 1;
            return;
        }
        memcpy(e->dst + e->written, p, n);
    } else {
        e->out(p, n);
    }
    e->written += n;
}

static void enc_flush(cobs_enc_t *e) {
    uint8_t code = (uint8_t)(e->n + 1u);
    enc_emit(e, &code, 1);
    enc_emit(e, e->blk, e->n);
    e->n = 0;
    e->any = 1;
}

static void enc_push(cobs_enc_t *e, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0) {
            enc_flush(e);
            e->after_zero = 1;
            continue;
        }
        e->blk[e->n++] = p[i];
        e->after_zero = 0;
        if (e->n == 254) enc_flush(e); /* code 0xFF: no implied zero */
    }
}

static void enc_finish(cobs_enc_t *e) {
    if (e->n || e->after_zero || !e->any) enc_flush(e);
}

size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    cobs_enc_t e;
    memset(&e, 0, sizeof e);
    e.dst = out;
    e.cap = cap;
    enc_push(&e, in, n);
    enc_finish(&e);
    return e.overflow ? 0 : e.written;
}

long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    size_t i = 0, o = 0;
    if (n == 0) return -1;
    while (i < n) {
        uint8_t code = in[i];
        if (code == 0) return -1;
        size_t end = i + code;
        if (end > n) return -1;
        if (o + code - 1u > cap) return -1;
        for (size_t k = i + 1; k < end; k++) { /* ascending: safe in place (o <= k - 1) */
            if (in[k] == 0) return -1;
            out[o++] = in[k];
        }
        i = end;
        if (code != 0xFF && i < n) {
            if (o + 1 > cap) return -1;
            out[o++] = 0;
        }
    }
    return (long)o;
}

size_t frame_write(uint8_t type, uint16_t seq, const piece_t *pieces, int n_pieces, wire_out_fn out) {
    size_t len = 0;
    for (int i = 0; i < n_pieces; i++) len += pieces[i].n;
    if (len > ODL_MAX_PAYLOAD) return 0;
    uint8_t hdr[5] = {type, (uint8_t)seq, (uint8_t)(seq >> 8), (uint8_t)len, (uint8_t)(len >> 8)};
    uint16_t crc = crc16_ccitt(hdr, 5, 0xFFFFu);
    for (int i = 0; i < n_pieces; i++) crc = crc16_ccitt((const uint8_t *)pieces[i].p, pieces[i].n, crc);
    uint8_t tail[2] = {(uint8_t)crc, (uint8_t)(crc >> 8)};
    static cobs_enc_t e;
    memset(&e, 0, sizeof e);
    e.out = out;
    static const uint8_t zero = 0;
    out(&zero, 1); /* resync delimiter before every frame, as the emulated board sends */
    enc_push(&e, hdr, 5);
    for (int i = 0; i < n_pieces; i++) enc_push(&e, (const uint8_t *)pieces[i].p, pieces[i].n);
    enc_push(&e, tail, 2);
    enc_finish(&e);
    out(&zero, 1);
    return e.written + 2;
}

void frame_dec_reset(frame_dec_t *d) {
    d->n = 0;
    d->overflow = 0;
}

/* A complete encoded run (between delimiters) -> FD_* */
static int finish(frame_dec_t *d) {
    uint16_t n = d->n;
    d->n = 0;
    if (d->overflow) {
        d->overflow = 0;
        return FD_BAD_FRAME;
    }
    if (n == 0) return FD_NONE; /* empty frame (resync zeros) */
    long b = cobs_decode(d->buf, n, d->buf, sizeof d->buf);
    if (b < 7 || b > (long)ODL_MAX_BODY) return FD_BAD_FRAME;
    uint16_t len = rd16(d->buf + 3);
    if ((long)len + 7 != b) return FD_BAD_FRAME;
    uint16_t crc = rd16(d->buf + 5 + len);
    if (crc16_ccitt(d->buf, 5u + len, 0xFFFFu) != crc) return FD_BAD_CRC;
    d->body_len = (uint16_t)b;
    d->type = d->buf[0];
    d->seq = rd16(d->buf + 1);
    d->len = len;
    d->payload = d->buf + 5;
    return FD_FRAME;
}

int frame_dec_feed(frame_dec_t *d, const uint8_t **p, size_t *n) {
    while (*n) {
        uint8_t c = **p;
        (*p)++;
        (*n)--;
        if (c == 0) {
            int r = finish(d);
            if (r != FD_NONE) return r;
            continue;
        }
        if (d->overflow) continue;
        if (d->n >= sizeof d->buf) {
            d->overflow = 1; /* longer than any valid frame: drop up to the next 00 */
            continue;
        }
        d->buf[d->n++] = c;
    }
    return FD_NONE;
}
