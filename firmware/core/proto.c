/*
 * Protocol v1, board side (docs/protocol.md): link framing, the response cache, every request of the
 * catalogue, events, the sensor stream and the main loop.  Behaviour mirrors the Python emulated board
 * (device/nucleo/emulator.py) so the same conformance tests run against both.
 */
#include "proto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "board.h"
#include "model.h"
#include "store.h"
#include "train.h"
#include "wire.h"

#define MAX_CHUNK (ODL_MAX_PAYLOAD - 4u)

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire is little-endian and arrays are sent as they are");

typedef struct {
    uint8_t type; /* response type, or T_ERROR */
    odl_buf b;
    uint8_t err;
    uint32_t a0, a1;
    char msg[ODL_MAX_ERROR_TEXT + 1];
    uint8_t reset_after; /* RESET: reboot after the ACK is out */
} reply_t;

static struct {
    frame_dec_t dec;
    /* the response cache: the last request (length + CRC-32 of its body) and its reply, which is built in
     * place here, so a retry is answered with the same bytes without executing the request again */
    uint16_t cache_req_len;
    uint32_t cache_req_crc;
    uint8_t rsp_type;
    uint16_t rsp_seq, rsp_len;
    uint8_t payload[ODL_MAX_PAYLOAD];
    uint16_t event_seq;
    odl_stats_t st;
    /* model */
    model_t model;
    /* transfer */
    uint8_t xfer;  /* 0 none, BLOB_MODEL, BLOB_DATA */
    int xfer_blob;
    uint32_t xfer_total, xfer_crc, xfer_got, xfer_desc;
    uint8_t xfer_slot, desc_done;
    /* sensor */
    uint32_t odr_mhz;
    uint8_t fs_g, streaming, whoami;
    uint16_t block_len;
    uint32_t block_no, next_index;
    uint16_t blk_n;
    uint8_t dropped;
    int16_t blk[ODL_MAX_BLOCK_SAMPLES][3];
    uint64_t stream_t0;
    /* marker */
    uint8_t marker_on;
    uint16_t pulse_us;
    /* weights snapshot */
    uint8_t snap_valid;
    uint32_t snap_crc;
    uint16_t round_id;
} S;

const odl_stats_t *odl_stats(void) { return &S.st; }

static float *weights_ptr(void) {
    int b = store_find(BLOB_MODEL, 0);
    return b < 0 ? NULL : (float *)(void *)(store_ptr(b) + S.model.desc_len + ((8u - (S.model.desc_len & 7u)) & 7u));
}
/* The model blob is stored as [descriptor | pad to 8 | weights] so the weights are float-aligned. */
static uint32_t model_pad(uint32_t desc_len) { return (8u - (desc_len & 7u)) & 7u; }

/* ------------------------------------------------------------------------------------------------ */
/* output                                                                                           */
/* ------------------------------------------------------------------------------------------------ */
static void write_all(const uint8_t *p, size_t n) {
    while (n) {
        size_t w = board_link_write(p, n);
        p += w;
        n -= w;
        if (n && !w) board_poll(); /* TX full: let it drain */
    }
}

/* Send one frame whose payload is the concatenation of `pieces`; a droppable frame (SAMPLES) is dropped
 * when the TX side has no room for all of it. */
static int send_frame(uint8_t type, uint16_t seq, const piece_t *pieces, int n, int droppable) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += pieces[i].n;
    if (droppable && board_link_tx_free() < frame_wire_max(len)) return 0;
    return frame_write(type, seq, pieces, n, write_all) != 0;
}

static int emit(uint8_t type, const piece_t *pieces, int n, int droppable) {
    uint16_t seq = (uint16_t)((S.event_seq + 1u) % 0xFFFFu);
    if (!seq) seq = 1;
    if (!send_frame(type, seq, pieces, n, droppable)) return 0;
    S.event_seq = seq;
    return 1;
}

static int emit1(uint8_t type, const uint8_t *p, uint16_t len) {
    piece_t pc = {p, len};
    return emit(type, &pc, 1, 0);
}

void odl_log(uint8_t level, const char *fmt, ...) {
    uint8_t p[1 + ODL_MAX_ERROR_TEXT + 1];
    p[0] = level;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)p + 1, sizeof p - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if (n > (int)ODL_MAX_ERROR_TEXT) n = (int)ODL_MAX_ERROR_TEXT;
    emit1(T_LOG, p, (uint16_t)(1 + n));
}

uint64_t odl_marker(void) {
    uint64_t t = board_ticks();
    if (S.marker_on) board_marker_pulse(S.pulse_us);
    return t;
}

void odl_emit_batch_report(uint16_t round_id, uint8_t phase, uint16_t epoch, uint16_t batch, uint16_t per_epoch,
                           uint16_t n, float loss, uint64_t t0, uint64_t t1, uint64_t cycles) {
    uint8_t p[40];
    odl_buf b = {p, 0, sizeof p};
    b_u16(&b, round_id), b_u8(&b, phase), b_u8(&b, 0), b_u16(&b, epoch), b_u16(&b, batch), b_u16(&b, per_epoch);
    b_u16(&b, n), b_f32(&b, loss), b_u64(&b, t0), b_u64(&b, t1), b_u64(&b, cycles);
    emit1(T_BATCH_REPORT, p, b.len);
}

void odl_emit_round_done(uint16_t round_id, uint8_t status, uint8_t error, uint16_t epochs, uint16_t best_epoch,
                         uint32_t batches, float loss, float acc, uint64_t t0, uint64_t t1, uint64_t cycles) {
    uint8_t p[44];
    odl_buf b = {p, 0, sizeof p};
    b_u16(&b, round_id), b_u8(&b, status), b_u8(&b, error), b_u16(&b, epochs), b_u16(&b, best_epoch);
    b_u32(&b, batches);
    b_f32(&b, loss), b_f32(&b, acc), b_u64(&b, t0), b_u64(&b, t1), b_u64(&b, cycles);
    emit1(T_ROUND_DONE, p, b.len);
}

void odl_emit_val_report(uint16_t round_id, uint16_t epoch, uint16_t n, uint8_t best, float loss, float f1,
                         uint64_t t0, uint64_t t1, uint64_t cycles) {
    uint8_t p[40];
    odl_buf b = {p, 0, sizeof p};
    b_u16(&b, round_id), b_u16(&b, epoch), b_u16(&b, n), b_u8(&b, best), b_u8(&b, 0);
    b_f32(&b, loss), b_f32(&b, f1), b_u64(&b, t0), b_u64(&b, t1), b_u64(&b, cycles);
    emit1(T_VAL_REPORT, p, b.len);
}

void odl_emit_eval_result(uint8_t slot, uint8_t k, uint16_t n, float loss, uint64_t cycles, const uint16_t *conf) {
    uint8_t p[16];
    odl_buf b = {p, 0, sizeof p};
    b_u8(&b, slot), b_u8(&b, k), b_u16(&b, n), b_f32(&b, loss), b_u64(&b, cycles);
    piece_t pc[2] = {{p, b.len}, {conf, 2u * k * k}}; /* u16 counts, little-endian in memory */
    emit(T_EVAL_RESULT, pc, 2, 0);
}

/* ------------------------------------------------------------------------------------------------ */
/* helpers                                                                                          */
/* ------------------------------------------------------------------------------------------------ */
static void fail(reply_t *r, uint8_t code, uint32_t a0, uint32_t a1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void fail(reply_t *r, uint8_t code, uint32_t a0, uint32_t a1, const char *fmt, ...) {
    r->type = T_ERROR;
    r->err = code;
    r->a0 = a0;
    r->a1 = a1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

static int busy(reply_t *r, const char *what) {
    if (odl_job.kind == JOB_NONE) return 0;
    fail(r, E_BUSY, S.round_id, 0, "cannot %s: %s %u is running", what,
         odl_job.kind == JOB_TRAIN ? "round" : "evaluation", odl_job.round_id);
    return 1;
}

static uint32_t data_total(void) { return store_bytes_of(BLOB_DATA); }
static uint32_t model_bytes(void) { return store_bytes_of(BLOB_MODEL); }
static uint32_t ram_free(void) {
    return ODL_ARENA_BYTES - model_bytes() - data_total(); /* what INFO/STATUS report: SRAM - reserve - model - data */
}
static uint32_t reserve_bytes(void) { return ODL_SRAM_BYTES - ODL_ARENA_BYTES; }

static uint8_t state(void) {
    if (odl_job.kind == JOB_TRAIN) return S_TRAINING;
    if (odl_job.kind == JOB_EVAL) return S_EVALUATING;
    if (S.xfer) return S_TRANSFER;
    return S.streaming ? S_STREAMING : S_IDLE;
}

static void xfer_cancel(void) {
    if (S.xfer && S.xfer_blob >= 0) store_free(S.xfer_blob);
    S.xfer = 0;
    S.xfer_blob = -1;
}

/* 1 (the error set) when the arena's blob table is full: TOO_LARGE naming the limit, not an OUT_OF_RAM that
 * would claim the bytes do not fit */
static int blobs_full(reply_t *r) {
    if (store_count() < ODL_MAX_BLOBS) return 0;
    fail(r, E_TOO_LARGE, (uint32_t)store_count(), ODL_MAX_BLOBS,
         "the board keeps at most %u blobs (the model and the dataset segments): clear a slot, or upload its windows "
         "in fewer, larger segments",
         ODL_MAX_BLOBS);
    return 1;
}

static uint32_t sens_ng(uint8_t fs) { return fs == 2 ? 61000u : fs == 4 ? 122000u : fs == 8 ? 244000u : 488000u; }

static void sensor_state(reply_t *r) {
    r->type = T_SENSOR_STATE;
    b_u32(&r->b, S.odr_mhz), b_u8(&r->b, S.fs_g), b_u8(&r->b, S.streaming), b_u16(&r->b, S.block_len);
    b_u32(&r->b, sens_ng(S.fs_g));
}

static const uint32_t ODR_LADDER[] = {12500, 26000, 52000, 104000, 208000, 417000, 833000, 1667000, 3333000, 6667000};

/* ------------------------------------------------------------------------------------------------ */
/* handlers                                                                                         */
/* ------------------------------------------------------------------------------------------------ */
static void h_hello(const uint8_t *p, reply_t *r) {
    /* the highest version both speak: this board speaks ODL_PROTOCOL_MIN .. ODL_PROTOCOL */
    uint8_t proto = p[5] < ODL_PROTOCOL ? p[5] : ODL_PROTOCOL;
    if (memcmp(p, "ODL1", 4) != 0 || proto < p[4] || proto < ODL_PROTOCOL_MIN) {
        fail(r, E_BAD_VERSION, ODL_PROTOCOL, 0,
             "board speaks ODL1 v%u..%u; host offered magic %02X%02X%02X%02X v%u..%u", ODL_PROTOCOL_MIN, ODL_PROTOCOL,
             p[0], p[1], p[2], p[3], p[4], p[5]);
        return;
    }
    r->type = T_HELLO_RSP;
    b_bytes(&r->b, "ODL1", 4), b_u8(&r->b, proto), b_u8(&r->b, 0), b_u16(&r->b, ODL_MAX_PAYLOAD);
    b_u8(&r->b, ODL_FW_MAJOR), b_u8(&r->b, ODL_FW_MINOR), b_u8(&r->b, ODL_FW_PATCH);
    b_u8(&r->b, board_get_info()->emulated ? 1 : 0), b_u32(&r->b, ODL_TICK_HZ);
}

static void h_info(reply_t *r) {
    const board_info_t *bi = board_get_info();
    r->type = T_INFO;
    odl_buf *b = &r->b;
    b_u8(b, ODL_FW_MAJOR), b_u8(b, ODL_FW_MINOR), b_u8(b, ODL_FW_PATCH), b_u8(b, ODL_PROTOCOL);
    b_u16(b, bi->dev_id), b_u16(b, bi->rev_id), b_u32(b, board_sysclk()), b_u32(b, ODL_TICK_HZ);
    b_u32(b, ODL_SRAM_BYTES), b_u32(b, ram_free()), b_u32(b, bi->flash_total), b_u8(b, S.whoami);
    b_u8(b, bi->emulated ? 1 : 0), b_u16(b, 0);
    b_str(b, bi->board, 16), b_str(b, bi->mcu, 16), b_str(b, S.whoami ? "LSM6DSO" : "none", 16), b_str(b, bi->build, 16);
}

static void h_status(reply_t *r) {
    r->type = T_STATUS;
    odl_buf *b = &r->b;
    b_u8(b, state()), b_u8(b, S.model.loaded), b_u16(b, S.round_id), b_u64(b, board_ticks()), b_u32(b, ram_free());
    uint32_t n0 = data_count(0), n1 = data_count(1);
    b_u16(b, (uint16_t)(n0 > 0xFFFF ? 0xFFFF : n0)), b_u16(b, (uint16_t)(n1 > 0xFFFF ? 0xFFFF : n1));
    b_u32(b, S.st.rx_frames), b_u32(b, S.st.rx_errors), b_u32(b, S.st.tx_dropped), b_u32(b, 0);
}

static void h_set_clock(const uint8_t *p, reply_t *r) {
    if (busy(r, "change the clock")) return;
    uint32_t hz = rd32(p);
    if (hz < ODL_SYSCLK_MIN || hz > ODL_SYSCLK_MAX || hz % 1000000u) {
        fail(r, E_BAD_PARAM, hz, 0, "sysclk_hz %lu must be a whole number of MHz in 4..80 MHz", (unsigned long)hz);
        return;
    }
    uint32_t got = board_set_sysclk(hz);
    if (!got) {
        fail(r, E_BAD_PARAM, hz, 0, "sysclk_hz %lu cannot be set on this board", (unsigned long)hz);
        return;
    }
    r->type = T_CLOCK;
    b_u32(&r->b, got);
}

static void h_marker(const uint8_t *p, reply_t *r) {
    uint16_t us = rd16(p + 2);
    if (us < 1 || us > 10000) {
        fail(r, E_BAD_PARAM, us, 0, "pulse_us %u outside 1..10000", us);
        return;
    }
    S.marker_on = p[0] ? 1 : 0;
    S.pulse_us = us;
    r->type = T_ACK;
    b_u8(&r->b, T_SET_MARKER);
}

static void stream_restart(void) {
    S.block_no = 0;
    S.blk_n = 0;
    S.dropped = 0;
    S.next_index = 0;
    board_sensor_start();
}

static void h_sensor_config(const uint8_t *p, reply_t *r) {
    uint32_t odr = rd32(p);
    uint8_t fs = p[4];
    int ok = 0;
    for (size_t i = 0; i < ODL_ARRAY_LEN(ODR_LADDER); i++) ok |= ODR_LADDER[i] == odr;
    if (!ok) {
        fail(r, E_BAD_PARAM, odr, 0,
             "odr_mhz %lu is not an LSM6DSO rate (allowed mHz: 12500, 26000, 52000, 104000, 208000, 417000, 833000, "
             "1667000, 3333000, 6667000)",
             (unsigned long)odr);
        return;
    }
    if (fs != 2 && fs != 4 && fs != 8 && fs != 16) {
        fail(r, E_BAD_PARAM, fs, 0, "fs_g %u is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)", fs);
        return;
    }
    if (S.whoami && board_sensor_config(odr, fs) != 0) {
        fail(r, E_INTERNAL, 0, 0, "the accelerometer did not accept ODR %lu mHz / +-%u g", (unsigned long)odr, fs);
        return;
    }
    S.odr_mhz = odr;
    S.fs_g = fs;
    if (S.streaming) stream_restart(); /* the sample clock restarts at the new rate */
    sensor_state(r);
}

static void h_stream_start(const uint8_t *p, reply_t *r) {
    if (busy(r, "start the sensor stream")) return;
    uint16_t n = rd16(p);
    if (n < 1 || n > ODL_MAX_BLOCK_SAMPLES) {
        fail(r, E_BAD_PARAM, n, 0, "block_len %u outside 1..%u", n, ODL_MAX_BLOCK_SAMPLES);
        return;
    }
    if (!S.whoami) {
        fail(r, E_NO_DATA, 0, 0, "no accelerometer: the LSM6DSO did not answer WHO_AM_I (is the X-NUCLEO-IKS01A3 plugged in?)");
        return;
    }
    S.block_len = n;
    S.streaming = 1;
    stream_restart();
    sensor_state(r);
}

static void h_stream_stop(reply_t *r) {
    if (S.streaming) {
        board_sensor_stop();
        S.streaming = 0;
    }
    sensor_state(r);
}

static void model_info(reply_t *r) {
    const model_t *m = &S.model;
    r->type = T_MODEL_INFO;
    odl_buf *b = &r->b;
    b_u8(b, m->n_layers), b_u8(b, m->n_classes), b_u8(b, m->rank), b_u8(b, m->prep);
    b_u16(b, m->in[0]), b_u16(b, m->rank > 1 ? m->in[1] : 0), b_u16(b, m->rank > 2 ? m->in[2] : 0), b_u16(b, 0);
    b_u32(b, m->params), b_u32(b, 4u * m->params), b_u32(b, m->infer_mem), b_u32(b, ram_free()), b_u32(b, m->crc);
}

static void h_model_begin(const uint8_t *p, reply_t *r) {
    if (busy(r, "replace the model")) return;
    xfer_cancel();
    int old = store_find(BLOB_MODEL, 0);
    if (old >= 0) store_free(old); /* the old model is freed first */
    S.model.loaded = 0;
    S.snap_valid = 0;
    uint32_t total = rd32(p), desc = rd32(p + 4), crc = rd32(p + 8);
    if (desc < 16 || total < desc) {
        fail(r, E_BAD_PARAM, 0, 0,
             "desc_len %lu / total_len %lu inconsistent (descriptor >= 16 bytes, total >= descriptor)",
             (unsigned long)desc, (unsigned long)total);
        return;
    }
    if (blobs_full(r)) return;
    uint32_t need = total + model_pad(desc), avail = store_free_bytes();
    if (need > avail) {
        fail(r, E_OUT_OF_RAM, need, avail,
             "model blob needs %lu B of RAM, %lu B free (%lu B SRAM - %lu B firmware - %lu B datasets)",
             (unsigned long)need, (unsigned long)avail, (unsigned long)ODL_SRAM_BYTES, (unsigned long)reserve_bytes(),
             (unsigned long)data_total());
        return;
    }
    S.xfer_blob = store_alloc(BLOB_PENDING, 0, need);
    if (S.xfer_blob < 0) {
        fail(r, E_OUT_OF_RAM, need, avail, "no room for a %lu-byte model blob", (unsigned long)need);
        return;
    }
    S.xfer = BLOB_MODEL;
    S.xfer_total = total, S.xfer_desc = desc, S.xfer_crc = crc, S.xfer_got = 0, S.desc_done = 0;
    r->type = T_XFER_ACK;
    b_u32(&r->b, 0);
}

/* where byte `off` of the blob is stored (the model blob has padding between descriptor and weights) */
static uint8_t *xfer_dst(uint32_t off) {
    uint8_t *base = store_ptr(S.xfer_blob);
    if (S.xfer == BLOB_MODEL && off >= S.xfer_desc) return base + off + model_pad(S.xfer_desc);
    return base + off;
}

static int chunk(uint8_t kind, const uint8_t *p, uint16_t len, reply_t *r) {
    const char *name = kind == BLOB_MODEL ? "model" : "data";
    if (S.xfer != kind) {
        fail(r, E_BAD_STATE, 0, 0, "%s chunk without a %s_BEGIN", name, kind == BLOB_MODEL ? "MODEL" : "DATA");
        return -1;
    }
    uint32_t off = rd32(p);
    uint32_t n = (uint32_t)len - 4u;
    const uint8_t *data = p + 4;
    if (off < S.xfer_got && off + n <= S.xfer_got) return 0; /* a chunk already stored: acknowledged again */
    if (off != S.xfer_got) {
        fail(r, E_BAD_OFFSET, S.xfer_got, off, "chunk at offset %lu, expected %lu", (unsigned long)off,
             (unsigned long)S.xfer_got);
        return -1;
    }
    if (off + n > S.xfer_total) {
        uint32_t t = S.xfer_total;
        xfer_cancel();
        fail(r, E_TOO_LARGE, off + n, t, "chunk ends at %lu, beyond the announced %lu bytes", (unsigned long)(off + n),
             (unsigned long)t);
        return -1;
    }
    /* copy, splitting at the descriptor boundary for the model blob */
    for (uint32_t i = 0; i < n;) {
        uint32_t o = off + i;
        uint32_t run = n - i;
        if (S.xfer == BLOB_MODEL && o < S.xfer_desc && o + run > S.xfer_desc) run = S.xfer_desc - o;
        memcpy(xfer_dst(o), data + i, run);
        i += run;
    }
    S.xfer_got += n;
    return 0;
}

static void h_model_chunk(const uint8_t *p, uint16_t len, reply_t *r) {
    if (chunk(BLOB_MODEL, p, len, r)) return;
    if (!S.desc_done && S.xfer_got >= S.xfer_desc) {
        uint32_t a0, a1;
        int e = model_parse(&S.model, store_ptr(S.xfer_blob), S.xfer_desc, S.xfer_total - S.xfer_desc, &a0, &a1,
                            r->msg, sizeof r->msg);
        if (!e) {
            uint32_t need = S.model.infer_mem + reserve_bytes() + data_total();
            if (need > ODL_SRAM_BYTES) {
                e = E_OUT_OF_RAM;
                a0 = need, a1 = ODL_SRAM_BYTES;
                snprintf(r->msg, sizeof r->msg,
                         "model needs %lu B for inference (weights + activations + %lu B firmware + %lu B datasets), "
                         "SRAM is %lu B",
                         (unsigned long)need, (unsigned long)reserve_bytes(), (unsigned long)data_total(),
                         (unsigned long)ODL_SRAM_BYTES);
            }
        }
        if (e) {
            S.model.loaded = 0;
            xfer_cancel();
            r->type = T_ERROR, r->err = (uint8_t)e, r->a0 = a0, r->a1 = a1;
            return;
        }
        S.desc_done = 1;
    }
    r->type = T_XFER_ACK;
    b_u32(&r->b, S.xfer_got);
}

static uint32_t blob_crc(int blob, uint32_t total, uint32_t desc, int model) {
    uint8_t *base = store_ptr(blob);
    if (!model) return crc32_update(0, base, total);
    uint32_t c = crc32_update(0, base, desc);
    return crc32_update(c, base + desc + model_pad(desc), total - desc);
}

static void h_model_end(reply_t *r) {
    if (S.xfer != BLOB_MODEL) {
        fail(r, E_BAD_STATE, 0, 0, "MODEL_END without a MODEL_BEGIN");
        return;
    }
    if (S.xfer_got != S.xfer_total || !S.desc_done) {
        uint32_t got = S.xfer_got, t = S.xfer_total;
        xfer_cancel();
        fail(r, E_BAD_OFFSET, got, t, "model transfer incomplete: %lu of %lu bytes", (unsigned long)got, (unsigned long)t);
        return;
    }
    uint32_t c = blob_crc(S.xfer_blob, S.xfer_total, S.xfer_desc, 1);
    if (c != S.xfer_crc) {
        uint32_t a = S.xfer_crc;
        xfer_cancel();
        fail(r, E_BLOB_CRC, a, c, "model blob CRC-32 0x%08lX does not match announced 0x%08lX", (unsigned long)c,
             (unsigned long)a);
        return;
    }
    /* reject non-finite weights: they would poison every later computation */
    const float *w = (const float *)(const void *)(store_ptr(S.xfer_blob) + S.xfer_desc + model_pad(S.xfer_desc));
    for (uint32_t i = 0; i < S.model.params; i++)
        if (!isfinite(w[i])) {
            xfer_cancel();
            fail(r, E_BAD_PARAM, i, 0, "weight %lu of the model is not finite (NaN or infinity)", (unsigned long)i);
            return;
        }
    store_blob(S.xfer_blob)->kind = BLOB_MODEL;
    S.xfer = 0;
    S.xfer_blob = -1;
    S.model.loaded = 1;
    S.model.crc = c;
    S.model.blob_len = S.xfer_total;
    model_info(r);
}

static void data_state(uint8_t slot, reply_t *r) {
    uint16_t T = 0;
    uint8_t C = 0, dt = 0;
    uint32_t n = data_count(slot);
    data_shape(slot, &T, &C, &dt);
    r->type = T_DATA_STATE;
    b_u8(&r->b, slot), b_u8(&r->b, 0), b_u16(&r->b, (uint16_t)n), b_u16(&r->b, n ? T : 0), b_u8(&r->b, n ? C : 0);
    b_u8(&r->b, n ? dt : 0), b_u32(&r->b, data_bytes(slot)), b_u32(&r->b, ram_free());
}

static void h_data_clear(const uint8_t *p, reply_t *r) {
    if (busy(r, "clear the datasets")) return;
    uint8_t slot = p[0];
    if (slot != 0 && slot != 1 && slot != 0xFF) {
        fail(r, E_BAD_PARAM, slot, 0, "slot %u is not 0 (training), 1 (held) or 255 (both)", slot);
        return;
    }
    if (slot == 0xFF) {
        data_clear(0);
        data_clear(1);
    } else {
        data_clear(slot);
    }
    data_state(slot == 0xFF ? 0 : slot, r);
}

static void h_data_begin(const uint8_t *p, reply_t *r) {
    if (busy(r, "upload data")) return;
    uint8_t slot = p[0];
    uint32_t total = rd32(p + 4), crc = rd32(p + 8);
    if (slot != 0 && slot != 1) {
        fail(r, E_BAD_PARAM, slot, 0, "slot %u is not 0 (training) or 1 (held)", slot);
        return;
    }
    xfer_cancel();
    if (blobs_full(r)) return;
    uint32_t avail = store_free_bytes();
    if (total > avail || (S.xfer_blob = store_alloc(BLOB_PENDING, slot, total)) < 0) {
        fail(r, E_OUT_OF_RAM, total, avail, "dataset of %lu B does not fit: %lu B free", (unsigned long)total,
             (unsigned long)avail);
        return;
    }
    S.xfer = BLOB_DATA;
    S.xfer_slot = slot, S.xfer_total = total, S.xfer_crc = crc, S.xfer_got = 0, S.xfer_desc = 0;
    r->type = T_XFER_ACK;
    b_u32(&r->b, 0);
}

static void h_data_chunk(const uint8_t *p, uint16_t len, reply_t *r) {
    if (chunk(BLOB_DATA, p, len, r)) return;
    r->type = T_XFER_ACK;
    b_u32(&r->b, S.xfer_got);
}

static void h_data_end(reply_t *r) {
    if (S.xfer != BLOB_DATA) {
        fail(r, E_BAD_STATE, 0, 0, "DATA_END without a DATA_BEGIN");
        return;
    }
    if (S.xfer_got != S.xfer_total) {
        uint32_t got = S.xfer_got, t = S.xfer_total;
        xfer_cancel();
        fail(r, E_BAD_OFFSET, got, t, "dataset transfer incomplete: %lu of %lu bytes", (unsigned long)got, (unsigned long)t);
        return;
    }
    uint32_t c = blob_crc(S.xfer_blob, S.xfer_total, 0, 0);
    if (c != S.xfer_crc) {
        uint32_t a = S.xfer_crc;
        xfer_cancel();
        fail(r, E_BLOB_CRC, a, c, "dataset blob CRC-32 0x%08lX does not match announced 0x%08lX", (unsigned long)c,
             (unsigned long)a);
        return;
    }
    dseg_t seg;
    int e = data_parse(store_ptr(S.xfer_blob), S.xfer_total, &seg, r->msg, sizeof r->msg);
    if (e) {
        xfer_cancel();
        r->type = T_ERROR, r->err = (uint8_t)e, r->a0 = r->a1 = 0;
        return;
    }
    uint8_t slot = S.xfer_slot;
    uint16_t T;
    uint8_t C, dt;
    if (data_shape(slot, &T, &C, &dt) && (T != seg.T || C != seg.C)) {
        xfer_cancel();
        fail(r, E_BAD_PARAM, 0, 0, "windows of shape (%u, %u) cannot join slot %u holding (%u, %u)", seg.T, seg.C, slot,
             T, C);
        return;
    }
    uint32_t n = data_count(slot) + seg.n;
    if (n > 0xFFFF) {
        xfer_cancel();
        fail(r, E_TOO_LARGE, n, 0xFFFF, "slot %u would hold %lu windows (max 65535)", slot, (unsigned long)n);
        return;
    }
    store_blob(S.xfer_blob)->kind = BLOB_DATA;
    S.xfer = 0;
    S.xfer_blob = -1;
    data_state(slot, r);
}

/* the slot's windows must fit the model (NO_DATA / BAD_PARAM otherwise) */
static int check_slot(uint8_t slot, reply_t *r) {
    uint32_t n = data_count(slot);
    if (!n) {
        fail(r, E_NO_DATA, slot, 0, "slot %u (%s set) is empty", slot, slot == 0 ? "training" : "held");
        return -1;
    }
    uint16_t T;
    uint8_t C, dt;
    data_shape(slot, &T, &C, &dt);
    const model_t *m = &S.model;
    uint32_t want_c = m->rank == 1 ? 1 : (uint32_t)m->in[1] * (m->rank > 2 ? m->in[2] : 1);
    if (T != m->in[0] || C != want_c) {
        fail(r, E_BAD_PARAM, 0, 0, "slot %u windows are (%u, %u), the model takes (%u, %lu)", slot, T, C, m->in[0],
             (unsigned long)want_c);
        return -1;
    }
    uint8_t mx = data_max_label(slot);
    if (mx >= m->n_classes) {
        fail(r, E_BAD_PARAM, mx, m->n_classes, "slot %u has label %u, the model has %u classes", slot, mx, m->n_classes);
        return -1;
    }
    return 0;
}

/* Protocol v2 fields of TRAIN_START (docs/protocol.md §3.6); 0 if they are acceptable. */
static int robust_checks(const train_cfg_t *c, reply_t *r) {
    uint32_t n = data_count(0);
    if (c->n_val && c->n_val >= n) {
        fail(r, E_BAD_PARAM, c->n_val, n, "n_val %u leaves no training window (slot 0 holds %lu)", c->n_val,
             (unsigned long)n);
        return 1;
    }
    if ((c->patience || c->val_flags) && !c->n_val) {
        fail(r, E_BAD_PARAM, 0, 0, "patience and val_flags need validation windows (n_val > 0)");
        return 1;
    }
    if (c->val_flags & ~(VAL_RESTORE_BEST | VAL_SELECT_F1)) {
        fail(r, E_BAD_PARAM, c->val_flags, 0, "val_flags 0x%X: only bits 0, 1 are defined", c->val_flags);
        return 1;
    }
    if (!(isfinite(c->feature_lr_scale) && c->feature_lr_scale >= 0.0f && c->feature_lr_scale <= 10.0f)) {
        fail(r, E_BAD_PARAM, 0, 0, "feature_lr_scale outside 0..10");
        return 1;
    }
    if (!(isfinite(c->clip_norm) && c->clip_norm >= 0.0f && c->clip_norm <= 1e6f)) {
        fail(r, E_BAD_PARAM, 0, 0, "clip_norm outside 0..1e+06");
        return 1;
    }
    if (!(isfinite(c->l2sp) && c->l2sp >= 0.0f && c->l2sp <= 100.0f)) {
        fail(r, E_BAD_PARAM, 0, 0, "l2sp outside 0..100");
        return 1;
    }
    if (c->l2sp > 0.0f && c->epochs) {
        fail(r, E_UNSUPPORTED, 0, 0, "l2sp: this firmware keeps no anchor copy of the weights (L2-SP unsupported)");
        return 1;
    }
    if (c->n_val && S.model.n_classes > ODL_MAX_CLASSES_EVAL) {
        fail(r, E_TOO_LARGE, S.model.n_classes, ODL_MAX_CLASSES_EVAL, "%u classes: validation supports up to %u",
             S.model.n_classes, ODL_MAX_CLASSES_EVAL);
        return 1;
    }
    return 0;
}

static void h_train_start(const uint8_t *p, uint16_t len, reply_t *r) {
    if (busy(r, "start a round")) return;
    if (S.streaming) {
        fail(r, E_BUSY, 0, 0, "cannot train while the sensor streams: send STREAM_STOP first");
        return;
    }
    if (!S.model.loaded) {
        fail(r, E_NO_MODEL, 0, 0, "no model loaded: upload one first");
        return;
    }
    if (check_slot(0, r)) return;
    train_cfg_t c;
    c.mode = p[0], c.flags = p[1], c.epochs = rd16(p + 2), c.batch = rd16(p + 4), c.warmup_epochs = rd16(p + 6);
    c.lr = rdf32(p + 8), c.warmup_lr = rdf32(p + 12), c.seed = rd32(p + 16), c.layer_mask = rd64(p + 20);
    c.n_val = 0, c.patience = 0, c.val_flags = 0, c.feature_lr_scale = 1.0f, c.clip_norm = 0.0f, c.l2sp = 0.0f;
    if (len == TRAIN_START_V2_LEN) { /* protocol v2: the robust round */
        c.n_val = rd16(p + 28), c.patience = p[30], c.val_flags = p[31];
        c.feature_lr_scale = rdf32(p + 32), c.clip_norm = rdf32(p + 36), c.l2sp = rdf32(p + 40);
    }
    if (c.epochs + c.warmup_epochs < 1 || c.batch < 1) {
        fail(r, E_BAD_PARAM, 0, 0, "epochs %u + warmup %u must be >= 1 and batch %u >= 1", c.epochs, c.warmup_epochs,
             c.batch);
        return;
    }
    if (!(isfinite(c.lr) && c.lr >= 0.0f && c.lr <= 10.0f) || !(isfinite(c.warmup_lr) && c.warmup_lr >= 0.0f && c.warmup_lr <= 10.0f)) {
        fail(r, E_BAD_PARAM, 0, 0, "%s outside 0..10", !(isfinite(c.lr) && c.lr >= 0.0f && c.lr <= 10.0f) ? "lr" : "warmup_lr");
        return;
    }
    if (robust_checks(&c, r)) return;
    uint64_t masks[2] = {0, 0};
    int e = model_trainable(&S.model, c.mode, c.layer_mask, &masks[1], r->msg, sizeof r->msg);
    if (!e && c.warmup_epochs) e = model_trainable(&S.model, MODE_LAST, 0, &masks[0], r->msg, sizeof r->msg);
    if (e) {
        r->type = T_ERROR, r->err = (uint8_t)e, r->a0 = c.mode, r->a1 = 0;
        return;
    }
    uint64_t use[2];
    int np = 0;
    if (c.warmup_epochs) use[np++] = masks[0];
    if (c.epochs) use[np++] = masks[1];
    uint32_t plan = train_plan_bytes(&S.model, use, np);
    uint32_t region = plan; /* the plan, then the best-weights buffer of a robust round */
    if (c.n_val && (c.val_flags & VAL_RESTORE_BEST))
        region = ((plan + 7u) & ~7u) + train_best_bytes(&S.model, masks[1] | (c.warmup_epochs ? masks[0] : 0));
    uint32_t need = reserve_bytes() + model_bytes() + data_total() + region;
    if (region > store_free_bytes()) {
        fail(r, E_OUT_OF_RAM, need, ODL_SRAM_BYTES,
             "round needs %lu B (%lu B training buffers + %lu B model + %lu B datasets + %lu B firmware), SRAM is %lu B",
             (unsigned long)need, (unsigned long)region, (unsigned long)model_bytes(), (unsigned long)data_total(),
             (unsigned long)reserve_bytes(), (unsigned long)ODL_SRAM_BYTES);
        return;
    }
    S.snap_valid = 0;
    S.round_id = (uint16_t)(S.round_id + 1u);
    uint64_t est;
    uint32_t total;
    store_reserve(region);
    train_start(&S.model, weights_ptr(), &c, masks, S.round_id, data_count(0), plan, &est, &total);
    uint32_t mem = model_bytes() + region;
    if (store_top() + region > S.st.arena_high_water) S.st.arena_high_water = store_top() + region;
    r->type = T_ROUND_INFO;
    b_u16(&r->b, S.round_id), b_u16(&r->b, odl_job.per_epoch), b_u32(&r->b, total), b_u32(&r->b, mem);
    b_u32(&r->b, ODL_SRAM_BYTES), b_u64(&r->b, est);
    uint32_t f = board_sysclk();
    b_u64(&r->b, f ? est * 1000000ull / f : 0);
}

static void h_train_abort(reply_t *r) {
    if (odl_job.kind == JOB_TRAIN) odl_job.abort = 1;
    r->type = T_ACK;
    b_u8(&r->b, T_TRAIN_ABORT);
}

static void h_evaluate(const uint8_t *p, reply_t *r) {
    if (busy(r, "evaluate")) return;
    if (!S.model.loaded) {
        fail(r, E_NO_MODEL, 0, 0, "no model loaded");
        return;
    }
    uint8_t slot = p[0];
    if (slot > 1) {
        fail(r, E_BAD_PARAM, slot, 0, "slot %u is not 0 or 1", slot);
        return;
    }
    if (S.model.n_classes > ODL_MAX_CLASSES_EVAL) {
        fail(r, E_TOO_LARGE, S.model.n_classes, ODL_MAX_CLASSES_EVAL,
             "%u classes: the confusion matrix would not fit one frame (max 22)", S.model.n_classes);
        return;
    }
    if (check_slot(slot, r)) return;
    uint64_t none[1] = {0};
    uint32_t plan = train_plan_bytes(&S.model, none, 1);
    if (plan > store_free_bytes()) {
        uint32_t need = reserve_bytes() + model_bytes() + data_total() + plan;
        fail(r, E_OUT_OF_RAM, need, ODL_SRAM_BYTES, "evaluation needs %lu B of buffers, %lu B free", (unsigned long)plan,
             (unsigned long)store_free_bytes());
        return;
    }
    S.round_id = (uint16_t)(S.round_id + 1u);
    store_reserve(plan);
    eval_start(&S.model, weights_ptr(), slot, S.round_id);
    r->type = T_ACK;
    b_u8(&r->b, T_EVALUATE);
}

static void h_weights_info(reply_t *r) {
    if (busy(r, "read the weights")) return;
    if (!S.model.loaded) {
        fail(r, E_NO_MODEL, 0, 0, "no model loaded");
        return;
    }
    const uint8_t *w = (const uint8_t *)weights_ptr();
    S.snap_crc = crc32_update(0, w, 4u * S.model.params);
    S.snap_valid = 1;
    uint16_t nt = 0;
    for (int i = 0; i < S.model.n_layers; i++) nt = (uint16_t)(nt + S.model.L[i].n_tensors);
    r->type = T_WEIGHTS_META;
    b_u32(&r->b, 4u * S.model.params), b_u32(&r->b, S.snap_crc), b_u16(&r->b, nt), b_u16(&r->b, 0);
}

static void h_weights_read(const uint8_t *p, reply_t *r) {
    uint32_t off = rd32(p);
    uint16_t n = rd16(p + 4);
    if (!S.snap_valid || !S.model.loaded) {
        fail(r, E_BAD_STATE, 0, 0, "WEIGHTS_READ before WEIGHTS_INFO (or the weights changed since: take a new WEIGHTS_INFO)");
        return;
    }
    uint32_t total = 4u * S.model.params;
    if (off > total || n == 0 || n > MAX_CHUNK) {
        fail(r, E_BAD_PARAM, off, n, "read of %u B at %lu outside the %lu-byte blob (length 1..%u)", n,
             (unsigned long)off, (unsigned long)total, MAX_CHUNK);
        return;
    }
    if (off + n > total) n = (uint16_t)(total - off);
    r->type = T_WEIGHTS_DATA;
    b_u32(&r->b, off);
    b_bytes(&r->b, (const uint8_t *)weights_ptr() + off, n);
}

static void h_sim(uint8_t type, const uint8_t *p, uint16_t len, reply_t *r) {
    int n = board_sim_request(type, p, len, r->b.p, r->b.cap);
    if (n >= 0) {
        r->type = T_ACTIVITY;
        r->b.len = (uint16_t)n;
        return;
    }
    if (n == -2) {
        char m[ODL_MAX_ERROR_TEXT + 1];
        memcpy(m, r->b.p, sizeof m - 1);
        m[sizeof m - 1] = 0;
        fail(r, E_BAD_PARAM, 0, 0, "%s", m);
        return;
    }
    fail(r, E_UNSUPPORTED, 0, 0, "%s is for the emulated board only: this firmware drives a real accelerometer",
         type == T_SIM_SET_ACTIVITY ? "SimSetActivity" : "SimGetActivity");
}

/* fixed payload sizes; -1 = "at least" (tail) */
static int payload_ok(uint8_t t, uint16_t len, int *fixed, int *tail) {
    static const struct {
        uint8_t t;
        uint8_t n, tail;
        const char *name;
    } tab[] = {
        {T_HELLO, 8, 0, "Hello"},          {T_PING, 0, 1, "Ping"},
        {T_GET_INFO, 0, 0, "GetInfo"},     {T_RESET, 0, 0, "Reset"},
        {T_SET_CLOCK, 4, 0, "SetClock"},   {T_GET_STATUS, 0, 0, "GetStatus"},
        {T_SET_MARKER, 4, 0, "SetMarker"}, {T_SENSOR_CONFIG, 8, 0, "SensorConfig"},
        {T_STREAM_START, 2, 0, "StreamStart"}, {T_STREAM_STOP, 0, 0, "StreamStop"},
        {T_GET_SENSOR, 0, 0, "GetSensor"}, {T_MODEL_BEGIN, 12, 0, "ModelBegin"},
        {T_MODEL_CHUNK, 4, 1, "ModelChunk"}, {T_MODEL_END, 0, 0, "ModelEnd"},
        {T_DATA_CLEAR, 1, 0, "DataClear"}, {T_DATA_BEGIN, 12, 0, "DataBegin"},
        {T_DATA_CHUNK, 4, 1, "DataChunk"}, {T_DATA_END, 0, 0, "DataEnd"},
        {T_TRAIN_START, 28, 0, "TrainStart"}, {T_TRAIN_ABORT, 0, 0, "TrainAbort"},
        {T_EVALUATE, 1, 0, "Evaluate"},    {T_WEIGHTS_INFO, 0, 0, "WeightsInfo"},
        {T_WEIGHTS_READ, 6, 0, "WeightsRead"}, {T_SIM_SET_ACTIVITY, 16, 0, "SimSetActivity"},
        {T_SIM_GET_ACTIVITY, 0, 0, "SimGetActivity"},
    };
    for (size_t i = 0; i < ODL_ARRAY_LEN(tab); i++)
        if (tab[i].t == t) {
            *fixed = tab[i].n;
            *tail = tab[i].tail;
            if (t == T_TRAIN_START && len == TRAIN_START_V2_LEN) return 1; /* protocol v2 extension */
            return (len == tab[i].n) || (tab[i].tail && len >= tab[i].n) ? 1 : 0;
        }
    return -1; /* not in the catalogue */
}

static const char *req_name(uint8_t t);

static void dispatch(uint8_t t, const uint8_t *p, uint16_t len, reply_t *r) {
    if (t == 0 || t >= 0x70) {
        fail(r, E_UNKNOWN_TYPE, 0, 0, "type 0x%02X is not a request", t);
        return;
    }
    int fixed = 0, tail = 0;
    int ok = payload_ok(t, len, &fixed, &tail);
    if (ok < 0) {
        fail(r, E_UNKNOWN_TYPE, 0, 0, "unknown message type 0x%02X", t);
        return;
    }
    if (!ok) {
        fail(r, E_BAD_PAYLOAD, 0, 0, "%s payload is %u bytes, expected %s%d%s", req_name(t), len, tail ? "at least " : "",
             fixed, t == T_TRAIN_START ? " or 44" : "");
        return;
    }
    switch (t) {
    case T_HELLO: h_hello(p, r); break;
    case T_PING:
        r->type = T_PONG;
        b_bytes(&r->b, p, len);
        break;
    case T_GET_INFO: h_info(r); break;
    case T_RESET:
        r->type = T_ACK;
        b_u8(&r->b, T_RESET);
        r->reset_after = 1;
        break;
    case T_SET_CLOCK: h_set_clock(p, r); break;
    case T_GET_STATUS: h_status(r); break;
    case T_SET_MARKER: h_marker(p, r); break;
    case T_SENSOR_CONFIG: h_sensor_config(p, r); break;
    case T_STREAM_START: h_stream_start(p, r); break;
    case T_STREAM_STOP: h_stream_stop(r); break;
    case T_GET_SENSOR: sensor_state(r); break;
    case T_MODEL_BEGIN: h_model_begin(p, r); break;
    case T_MODEL_CHUNK: h_model_chunk(p, len, r); break;
    case T_MODEL_END: h_model_end(r); break;
    case T_DATA_CLEAR: h_data_clear(p, r); break;
    case T_DATA_BEGIN: h_data_begin(p, r); break;
    case T_DATA_CHUNK: h_data_chunk(p, len, r); break;
    case T_DATA_END: h_data_end(r); break;
    case T_TRAIN_START: h_train_start(p, len, r); break;
    case T_TRAIN_ABORT: h_train_abort(r); break;
    case T_EVALUATE: h_evaluate(p, r); break;
    case T_WEIGHTS_INFO: h_weights_info(r); break;
    case T_WEIGHTS_READ: h_weights_read(p, r); break;
    case T_SIM_SET_ACTIVITY:
    case T_SIM_GET_ACTIVITY: h_sim(t, p, len, r); break;
    default: fail(r, E_UNSUPPORTED, 0, 0, "%s is not implemented by this firmware", req_name(t)); break;
    }
}

static const char *req_name(uint8_t t) {
    switch (t) {
    case T_HELLO: return "Hello";
    case T_PING: return "Ping";
    case T_GET_INFO: return "GetInfo";
    case T_RESET: return "Reset";
    case T_SET_CLOCK: return "SetClock";
    case T_GET_STATUS: return "GetStatus";
    case T_SET_MARKER: return "SetMarker";
    case T_SENSOR_CONFIG: return "SensorConfig";
    case T_STREAM_START: return "StreamStart";
    case T_STREAM_STOP: return "StreamStop";
    case T_GET_SENSOR: return "GetSensor";
    case T_MODEL_BEGIN: return "ModelBegin";
    case T_MODEL_CHUNK: return "ModelChunk";
    case T_MODEL_END: return "ModelEnd";
    case T_DATA_CLEAR: return "DataClear";
    case T_DATA_BEGIN: return "DataBegin";
    case T_DATA_CHUNK: return "DataChunk";
    case T_DATA_END: return "DataEnd";
    case T_TRAIN_START: return "TrainStart";
    case T_TRAIN_ABORT: return "TrainAbort";
    case T_EVALUATE: return "Evaluate";
    case T_WEIGHTS_INFO: return "WeightsInfo";
    case T_WEIGHTS_READ: return "WeightsRead";
    case T_SIM_SET_ACTIVITY: return "SimSetActivity";
    case T_SIM_GET_ACTIVITY: return "SimGetActivity";
    default: return "request";
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* link                                                                                             */
/* ------------------------------------------------------------------------------------------------ */
static void send_cached(void) {
    piece_t pc = {S.payload, S.rsp_len};
    send_frame(S.rsp_type, S.rsp_seq, &pc, 1, 0);
}

static void on_frame(void) {
    frame_dec_t *d = &S.dec;
    S.st.rx_frames++;
    /* a retry of the previous request (same body) is answered from the cache, not executed again */
    uint32_t key = crc32_update(0, d->buf, d->body_len);
    if (S.cache_req_len && S.cache_req_len == d->body_len && S.cache_req_crc == key) {
        send_cached();
        return;
    }
    static reply_t r;
    memset(&r, 0, sizeof r);
    r.b.p = S.payload;
    r.b.cap = ODL_MAX_PAYLOAD;
    S.cache_req_len = 0; /* the cache is being rewritten */
    dispatch(d->type, d->payload, d->len, &r);
    if (r.type == T_ERROR) {
        uint8_t *p = S.payload;
        size_t ml = strlen(r.msg);
        if (ml > ODL_MAX_ERROR_TEXT) ml = ODL_MAX_ERROR_TEXT;
        p[0] = r.err, p[1] = d->type, wr16(p + 2, 0), wr32(p + 4, r.a0), wr32(p + 8, r.a1);
        memcpy(p + 12, r.msg, ml);
        r.b.len = (uint16_t)(12 + ml);
    }
    S.rsp_type = r.type;
    S.rsp_seq = d->seq;
    S.rsp_len = r.b.len;
    S.cache_req_len = d->body_len;
    S.cache_req_crc = key;
    send_cached();
    if (r.reset_after) board_reset(1);
}

/* A frame that failed COBS, length or CRC checks: counted, and answered with one ERROR (seq 0xFFFF) per
 * received chunk, sent at once so the host resends before it times out. */
static void bad_frame(int ev, int *answered) {
    S.st.rx_errors++;
    if (*answered) return;
    *answered = 1;
    uint8_t p[12 + 48];
    int ml = snprintf((char *)p + 12, 48, "frame dropped: %s",
                      ev == FD_BAD_CRC ? "CRC mismatch" : "invalid COBS or length");
    if (ml < 0) ml = 0;
    if (ml > 47) ml = 47;
    p[0] = ev == FD_BAD_CRC ? E_BAD_CRC : E_BAD_FRAME, p[1] = 0, wr16(p + 2, 0), wr32(p + 4, 0), wr32(p + 8, 0);
    piece_t pc = {p, (size_t)(12 + ml)};
    send_frame(T_ERROR, ODL_SEQ_UNATTRIBUTED, &pc, 1, 0);
}

static int link_poll(void) {
    uint8_t buf[256];
    int did = 0;
    for (;;) {
        size_t n = board_link_read(buf, sizeof buf);
        if (!n) break;
        did = 1;
        const uint8_t *p = buf;
        int answered = 0;
        while (n) {
            int ev = frame_dec_feed(&S.dec, &p, &n);
            if (ev == FD_FRAME) on_frame();
            else if (ev == FD_BAD_CRC || ev == FD_BAD_FRAME) bad_frame(ev, &answered);
        }
    }
    return did;
}

/* ------------------------------------------------------------------------------------------------ */
/* sensor stream                                                                                    */
/* ------------------------------------------------------------------------------------------------ */
static int stream_poll(void) {
    if (!S.streaming) return 0;
    int did = 0;
    for (;;) {
        uint32_t idx;
        uint64_t t0;
        size_t want = (size_t)(S.block_len - S.blk_n);
        size_t got = board_sensor_read(&S.blk[S.blk_n], want, &idx, &t0);
        if (!got) break;
        did = 1;
        if (S.blk_n == 0) {
            S.next_index = idx;
            S.stream_t0 = t0;
        }
        S.blk_n = (uint16_t)(S.blk_n + got);
        if (S.blk_n < S.block_len) continue;
        /* a full block: SAMPLES event (dropped when the link cannot take it) */
        uint8_t h[20];
        odl_buf b = {h, 0, sizeof h};
        uint64_t tick = S.stream_t0 + (uint64_t)S.next_index * 1000000000ull / S.odr_mhz;
        b_u32(&b, S.block_no), b_u64(&b, tick), b_u32(&b, S.odr_mhz), b_u8(&b, S.fs_g), b_u8(&b, S.dropped);
        b_u16(&b, S.blk_n);
        piece_t pc[2] = {{h, b.len}, {S.blk, 6u * S.blk_n}}; /* int16 counts, little-endian in memory */
        if (emit(T_SAMPLES, pc, 2, 1)) {
            S.dropped = 0;
        } else {
            S.dropped = (uint8_t)(S.dropped < 255 ? S.dropped + 1 : 255);
            S.st.tx_dropped++;
        }
        S.block_no++;
        S.blk_n = 0;
    }
    return did;
}

/* ------------------------------------------------------------------------------------------------ */
void odl_init(void) {
    memset(&S, 0, sizeof S);
    frame_dec_reset(&S.dec);
    store_reset();
    memset(&odl_job, 0, sizeof odl_job);
    S.xfer_blob = -1;
    S.odr_mhz = 26000;
    S.fs_g = 2;
    S.block_len = 26;
    S.marker_on = 1;
    S.pulse_us = 100;
    S.st.arena_bytes = ODL_ARENA_BYTES;
    S.whoami = board_sensor_whoami();
    if (S.whoami) board_sensor_config(S.odr_mhz, S.fs_g);
    uint8_t p[4] = {board_reset_cause(), ODL_FW_MAJOR, ODL_FW_MINOR, ODL_FW_PATCH};
    emit1(T_BOOT, p, 4);
    const char *why = board_boot_message();
    if (why && why[0]) odl_log(3, "%s", why);
    if (!S.whoami) odl_log(2, "no accelerometer: the LSM6DSO (X-NUCLEO-IKS01A3) did not answer WHO_AM_I");
}

int odl_poll(void) {
    int did = link_poll();
    did |= stream_poll();
    if (odl_job.kind != JOB_NONE) {
        job_step(&S.model, weights_ptr());
        board_poll();
        return 1;
    }
    return did;
}

void odl_main(void) {
    board_init();
    odl_init();
    for (;;)
        if (!odl_poll()) board_idle();
}
