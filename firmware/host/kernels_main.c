/*
 * odl-kernels: the firmware core's numerics and framing, driven by the host-side tests
 * (tests/device/test_firmware_host.py).  Built natively with -fsanitize=address,undefined, and for the Cortex-M4F
 * (build/qemu-mps2-an386/odl-kernels.elf, host/kernels_arm.c) to check the assembly kernels against the
 * native build's C twins under QEMU.
 *
 *   odl-kernels layers < request > result   one model, some windows: probabilities, losses, gradients
 *       request: u32 desc_len, u32 blob_len, blob (descriptor + weights), u64 trainable mask,
 *                u32 n, then n x (i32 label, float32[in_n])
 *       result:  n x (float32[n_classes] probabilities, float32 loss), then, if the mask is not 0, the
 *                gradients summed over the n windows, runtime layer by layer (kernel, then bias), float32
 *   odl-kernels layers1 < request > result  the same with the dense head one window at a time even where a
 *       round groups it (plan_t.group): the grouped and per-window heads must give the same bits
 *   odl-kernels wire       lines "TYPE SEQ PAYLOADHEX" -> wire frame hex (delimiters included)
 *   odl-kernels unwire     lines of wire hex -> "TYPE SEQ PAYLOADHEX" or "ERR BAD_CRC|BAD_FRAME"
 *   odl-kernels cobs       lines hex -> COBS hex;  odl-kernels uncobs: lines hex -> decoded hex or "ERR"
 *   odl-kernels crc        lines hex -> "CRC16 CRC32" (hex)
 *   odl-kernels perm SEED EPOCH N   -> the round's window order, one index per line
 *   odl-kernels sgd < u32 len, f32 n, f32 lr, f32 w[len], f32 acc[len] > w and acc after one SGD step
 *   odl-kernels mathf < u32 n, f32 x[n] > f32 odl_expf(x)[n], f32 odl_logf(x)[n]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/kernels.h"
#include "../core/model.h"
#include "../core/train.h"
#include "../core/wire.h"

#ifndef ODL_KERNELS_ARENA
#define ODL_KERNELS_ARENA (1u << 22)
#endif
static uint8_t arena[ODL_KERNELS_ARENA] __attribute__((aligned(8)));

static int read_all(void *dst, size_t n) { return fread(dst, 1, n, stdin) == n ? 0 : -1; }

static int die(const char *m) {
    fprintf(stderr, "odl-kernels: %s\n", m);
    return 2;
}

/* per_window: the per-window path even where a round groups the head (odl-kernels layers1) */
static int layers(int per_window) {
    uint32_t dl, bl;
    if (read_all(&dl, 4) || read_all(&bl, 4) || bl < dl || bl > (1u << 21)) return die("bad header");
    uint8_t *blob = malloc(bl);
    if (!blob || read_all(blob, bl)) return die("short blob");
    static model_t m;
    uint32_t a0, a1;
    char msg[256];
    int e = model_parse(&m, blob, dl, bl - dl, &a0, &a1, msg, sizeof msg);
    if (e) {
        fprintf(stderr, "odl-kernels: model: %s\n", msg);
        return 3;
    }
    /* weights at an 8-aligned address, as in the arena */
    float *w = (float *)(void *)arena;
    memcpy(w, blob + dl, bl - dl);
    uint64_t mask;
    uint32_t n;
    if (read_all(&mask, 8) || read_all(&n, 4)) return die("short request");
    static plan_t p;
    plan_lower(&p, &m, mask);
    uint8_t *region = arena + ((bl - dl + 7u) & ~7u);
    if (p.bytes > sizeof arena - (size_t)(region - arena)) return die("plan too large");
    plan_bind(&p, &m, w, region);
    plan_prepare(&p);
    if (per_window) p.group = 1;
    for (uint32_t s = 0; s < n; s++) {
        int32_t label;
        if (read_all(&label, 4) || read_all(p.x0, 4u * m.in_n)) return die("short window");
        int pred;
        if (!mask) {
            float loss = odl_forward(&p, label, &pred);
            fwrite(p.R[p.n - 1].out, 4, m.n_classes, stdout);
            fwrite(&loss, 4, 1, stdout);
            continue;
        }
        /* as a round runs it: a grouped head completes its windows together */
        float losses[ODL_HEAD_GROUP];
        int preds[ODL_HEAD_GROUP];
        int got = odl_train_window(&p, label, s + 1 == n, losses, preds);
        const rlayer_t *S = &p.R[p.n - 1];
        for (int g = 0; g < got; g++) {
            fwrite(S->out + (uint32_t)g * S->out_gs, 4, m.n_classes, stdout);
            fwrite(&losses[g], 4, 1, stdout);
        }
    }
    if (mask)
        for (int i = 0; i < p.n; i++) {
            const rlayer_t *R = &p.R[i];
            if (!R->trainable) continue;
            uint32_t nw = R->kind == RK_BN ? R->C : (uint32_t)(R->kind == RK_CONV ? R->K : 1) * R->C * R->F;
            fwrite(R->gw, 4, nw, stdout);
            if (R->gb) fwrite(R->gb, 4, R->kind == RK_BN ? R->C : R->F, stdout);
        }
    free(blob);
    return 0;
}

static int sgd(void) {
    uint32_t len;
    float n, lr;
    if (read_all(&len, 4) || read_all(&n, 4) || read_all(&lr, 4) || len > (1u << 16)) return die("bad sgd header");
    float *w = (float *)(void *)arena, *acc = w + len;
    if (read_all(w, 4u * len) || read_all(acc, 4u * len)) return die("short sgd arrays");
    k_sgd(w, acc, len, n, lr);
    fwrite(w, 4, len, stdout);
    fwrite(acc, 4, len, stdout);
    return 0;
}

static int mathf(void) {
    uint32_t n;
    if (read_all(&n, 4) || n > ODL_KERNELS_ARENA / 12u) return die("bad mathf header");
    float *x = (float *)(void *)arena, *e = x + n, *l = e + n;
    if (read_all(x, 4u * n)) return die("short mathf array");
    for (uint32_t i = 0; i < n; i++) e[i] = odl_expf(x[i]), l[i] = odl_logf(x[i]);
    fwrite(e, 4, n, stdout);
    fwrite(l, 4, n, stdout);
    return 0;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    while (s[0] && s[1] && n < cap) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) break;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void hex(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static uint8_t obuf[8192];
static size_t olen;
static void collect(const uint8_t *p, size_t n) {
    memcpy(obuf + olen, p, n);
    olen += n;
}

static int lines(const char *mode) {
    static char line[20000];
    static uint8_t buf[8192], out[9000];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(mode, "wire")) {
            unsigned t, seq;
            char ph[16384] = "";
            if (sscanf(line, "%x %u %16383s", &t, &seq, ph) < 2) return die("wire: TYPE SEQ PAYLOADHEX");
            size_t n = unhex(ph, buf, sizeof buf);
            piece_t pc = {buf, n};
            olen = 0;
            const size_t w = frame_write((uint8_t)t, (uint16_t)seq, &pc, 1, collect);
            if (!w) {
                printf("ERR\n");
                continue;
            }
            if (w != olen) { /* it returns the bytes it wrote, both delimiters included */
                printf("ERR LEN %zu %zu\n", w, olen);
                continue;
            }
            /* frame_write sends a leading resync 00; the golden vectors start at the first COBS byte */
            hex(obuf + 1, olen - 1);
            printf("\n");
        } else if (!strcmp(mode, "unwire") || !strcmp(mode, "unwireall")) {
            /* unwire: the first event of the line ("TYPE SEQ PAYLOAD", "ERR X" or "ERR INCOMPLETE");
             * unwireall: every event of the stream, separated by ';' */
            const int all = !strcmp(mode, "unwireall");
            size_t n = unhex(line, buf, sizeof buf);
            static frame_dec_t d;
            frame_dec_reset(&d);
            const uint8_t *q = buf;
            int events = 0;
            while (n) {
                int ev = frame_dec_feed(&d, &q, &n);
                if (ev == FD_NONE) continue;
                if (events++) printf(";");
                if (ev == FD_FRAME) {
                    printf("%02x %u ", d.type, d.seq);
                    hex(d.payload, d.len);
                } else printf("ERR %s", ev == FD_BAD_CRC ? "BAD_CRC" : "BAD_FRAME");
                if (!all) break;
            }
            if (!events && !all) printf("ERR INCOMPLETE");
            printf("\n");
        } else if (!strcmp(mode, "cobs")) {
            size_t n = unhex(line, buf, sizeof buf);
            size_t e = cobs_encode(buf, n, out, sizeof out);
            hex(out, e);
            printf("\n");
        } else if (!strcmp(mode, "uncobs")) {
            size_t n = unhex(line, buf, sizeof buf);
            long e = cobs_decode(buf, n, out, sizeof out);
            if (e < 0) printf("ERR\n");
            else {
                hex(out, (size_t)e);
                printf("\n");
            }
        } else if (!strcmp(mode, "crc")) {
            size_t n = unhex(line, buf, sizeof buf);
            printf("%04x %08lx\n", (unsigned)crc16_ccitt(buf, n, 0xFFFFu), (unsigned long)crc32_update(0, buf, n));
        }
    }
    return 0;
}

#if defined(ODL_SEMIHOSTED)
int kernels_main(int argc, char **argv) { /* host/kernels_arm.c: the ARM build under QEMU */
#else
int main(int argc, char **argv) {
#endif
    if (argc < 2) return die("usage: odl-kernels layers|layers1|sgd|mathf|wire|unwire|unwireall|cobs|uncobs|crc|perm");
    if (!strcmp(argv[1], "layers")) return layers(0);
    if (!strcmp(argv[1], "layers1")) return layers(1);
    if (!strcmp(argv[1], "sgd")) return sgd();
    if (!strcmp(argv[1], "mathf")) return mathf();
    if (!strcmp(argv[1], "perm")) {
        if (argc != 5) return die("perm SEED EPOCH N");
        uint32_t seed = (uint32_t)strtoul(argv[2], NULL, 0), ep = (uint32_t)strtoul(argv[3], NULL, 0),
                 n = (uint32_t)strtoul(argv[4], NULL, 0);
        for (uint32_t i = 0; i < n; i++) printf("%lu\n", (unsigned long)odl_perm(seed, ep, n, i));
        return 0;
    }
    return lines(argv[1]);
}
