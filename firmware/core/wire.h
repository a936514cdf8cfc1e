/* Framing of protocol v1: CRC-16/CCITT-FALSE, CRC-32/ISO-HDLC, COBS, frame encode/decode. */
#ifndef ODL_WIRE_H
#define ODL_WIRE_H

#include "odl.h"

uint16_t crc16_ccitt(const uint8_t *p, size_t n, uint16_t crc); /* init 0xFFFF for a fresh CRC */
uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n); /* zlib semantics: crc32(0, ...) */

/* COBS-encode n bytes into out (capacity cap); returns the encoded length, 0 if it does not fit. */
size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* Decode one COBS frame (no delimiter); returns the decoded length, or -1 if invalid or > cap.
 * in and out may be the same buffer (decoding in place). */
long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/* A frame whose payload is gathered from up to 4 pieces, encoded as it is written (no frame buffer). */
typedef struct {
    const void *p;
    size_t n;
} piece_t;
typedef void (*wire_out_fn)(const uint8_t *p, size_t n);
/* Largest wire size (COBS + delimiter) of a frame with a `len`-byte payload. */
static inline size_t frame_wire_max(size_t len) { return len + 7u + 1u + (len + 7u) / 254u + 1u; }
/* Writes [00] COBS(type seq len payload crc) [00] through out(); returns the bytes written. */
size_t frame_write(uint8_t type, uint16_t seq, const piece_t *pieces, int n_pieces, wire_out_fn out);

/* Streaming frame decoder: feed bytes; complete valid frames are returned one at a time. */
typedef struct {
    uint8_t buf[ODL_MAX_ENC]; /* encoded run, decoded in place */
    uint16_t n;
    uint8_t overflow;         /* discarding an over-long run up to the next 00 */
    uint16_t body_len;
    /* last frame */
    uint8_t type;
    uint16_t seq, len;
    const uint8_t *payload;
} frame_dec_t;

enum { FD_NONE = 0, FD_FRAME = 1, FD_BAD_CRC = 2, FD_BAD_FRAME = 3 };

void frame_dec_reset(frame_dec_t *d);
/* Consume bytes from *p (advancing it, *n decreasing) until one frame event: returns FD_FRAME (fields
 * valid until the next call), FD_BAD_CRC / FD_BAD_FRAME (a frame was dropped) or FD_NONE (input used up). */
int frame_dec_feed(frame_dec_t *d, const uint8_t **p, size_t *n);

#endif
