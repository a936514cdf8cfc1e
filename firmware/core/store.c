#include "store.h"

#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_OPEN(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ARENA_OPEN(p, n) ((void)(p), (void)(n))
#endif

uint8_t odl_arena[ODL_ARENA_BYTES] __attribute__((aligned(8)));
static blob_t blobs[ODL_MAX_BLOBS];
static int nblobs;
static uint32_t reserved; /* transient bytes of the running (or last) job's plan */

static uint32_t round8(uint32_t n) { return (n + 7u) & ~7u; }

uint32_t store_top(void) { return nblobs ? blobs[nblobs - 1].off + blobs[nblobs - 1].len : 0; }

static void guard(void) {
#if defined(__SANITIZE_ADDRESS__)
    uint32_t owned = store_top() + round8(reserved);
    if (owned > ODL_ARENA_BYTES) owned = ODL_ARENA_BYTES;
    ARENA_OPEN(odl_arena, owned);
    ASAN_POISON_MEMORY_REGION(odl_arena + owned, ODL_ARENA_BYTES - owned);
    for (int i = 0; i < nblobs; i++) /* and each blob's padding to 8 bytes: reading past its content */
        ASAN_POISON_MEMORY_REGION(odl_arena + blobs[i].off + blobs[i].used, blobs[i].len - blobs[i].used);
#endif
}

void store_reserve(uint32_t transient_bytes) {
    reserved = transient_bytes;
    guard();
}

void store_reset(void) {
    nblobs = 0;
    store_reserve(0);
}

uint32_t store_free_bytes(void) { return ODL_ARENA_BYTES - store_top(); }

uint8_t *store_transient(void) { return odl_arena + store_top(); }

int store_alloc(uint8_t kind, uint8_t slot, uint32_t len) {
    uint32_t need = round8(len);
    if (nblobs >= ODL_MAX_BLOBS || len > ODL_ARENA_BYTES || need > store_free_bytes()) return -1;
    blob_t *b = &blobs[nblobs];
    b->off = store_top();
    b->len = need;
    b->used = len;
    b->kind = kind;
    b->slot = slot;
    nblobs++;
    store_reserve(0); /* no job runs while blobs change */
    return nblobs - 1;
}

void store_free(int idx) {
    if (idx < 0 || idx >= nblobs) return;
    uint32_t gap = blobs[idx].len;
    uint32_t from = blobs[idx].off + gap;
    uint32_t top = store_top();
    ARENA_OPEN(odl_arena + blobs[idx].off, top - blobs[idx].off); /* the blobs above move down, paddings and all */
    if (top > from) memmove(odl_arena + blobs[idx].off, odl_arena + from, top - from);
    for (int i = idx + 1; i < nblobs; i++) {
        blobs[i].off -= gap;
        blobs[i - 1] = blobs[i];
    }
    nblobs--;
    store_reserve(0);
}

uint8_t *store_ptr(int idx) { return odl_arena + blobs[idx].off; }
blob_t *store_blob(int idx) { return &blobs[idx]; }
int store_count(void) { return nblobs; }

int store_find(uint8_t kind, int from) {
    for (int i = from < 0 ? 0 : from; i < nblobs; i++)
        if (blobs[i].kind == kind) return i;
    return -1;
}

uint32_t store_bytes_of(uint8_t kind) {
    uint32_t s = 0;
    for (int i = 0; i < nblobs; i++)
        if (blobs[i].kind == kind) s += blobs[i].len;
    return s;
}

/* ------------------------------------------------------------------------------------------------ */
int data_parse(const uint8_t *p, uint32_t len, dseg_t *o, char *msg, size_t cap) {
    if (len < 12) {
        snprintf(msg, cap, "dataset blob of %lu bytes is shorter than its 12-byte header", (unsigned long)len);
        return E_BAD_PAYLOAD;
    }
    o->n = rd16(p);
    o->T = rd16(p + 2);
    o->C = p[4];
    o->dtype = p[5];
    o->scale = rdf32(p + 8);
    if (o->dtype > 1) {
        snprintf(msg, cap, "dataset dtype code %u is unknown (0 f32, 1 i16)", o->dtype);
        return E_BAD_PAYLOAD;
    }
    uint32_t lab = o->n + ((4u - (o->n & 3u)) & 3u);
    uint64_t want = 12u + (uint64_t)lab + (uint64_t)o->n * o->T * o->C * (o->dtype ? 2u : 4u);
    if (o->n == 0 || o->T == 0 || o->C == 0 || want != len) {
        snprintf(msg, cap, "dataset blob is %lu bytes, header (n=%u, T=%u, C=%u) needs %llu", (unsigned long)len, o->n,
                 o->T, o->C, (unsigned long long)want);
        return E_BAD_PAYLOAD;
    }
    if (o->dtype == 1 && !(o->scale == o->scale)) {
        snprintf(msg, cap, "dataset scale is not a number");
        return E_BAD_PARAM;
    }
    o->labels = p + 12;
    o->values = p + 12 + lab;
    return 0;
}

static int seg_of(int blob, dseg_t *s) {
    char m[4];
    return data_parse(store_ptr(blob), blobs[blob].used, s, m, sizeof m);
}

uint32_t data_count(uint8_t slot) {
    uint32_t n = 0;
    dseg_t s;
    for (int i = 0; i < nblobs; i++)
        if (blobs[i].kind == BLOB_DATA && blobs[i].slot == slot && !seg_of(i, &s)) n += s.n;
    return n;
}

int data_shape(uint8_t slot, uint16_t *T, uint8_t *C, uint8_t *dtype) {
    dseg_t s;
    for (int i = 0; i < nblobs; i++)
        if (blobs[i].kind == BLOB_DATA && blobs[i].slot == slot && !seg_of(i, &s)) {
            *T = s.T, *C = s.C, *dtype = s.dtype;
            return 1;
        }
    return 0;
}

uint32_t data_bytes(uint8_t slot) {
    uint32_t b = 0;
    for (int i = 0; i < nblobs; i++)
        if (blobs[i].kind == BLOB_DATA && blobs[i].slot == slot) b += blobs[i].used;
    return b;
}

void data_clear(uint8_t slot) {
    for (int i = nblobs - 1; i >= 0; i--)
        if (blobs[i].kind == BLOB_DATA && blobs[i].slot == slot) store_free(i);
}

int data_window(uint8_t slot, uint32_t idx, float *dst) {
    dseg_t s;
    for (int i = 0; i < nblobs; i++) {
        if (blobs[i].kind != BLOB_DATA || blobs[i].slot != slot || seg_of(i, &s)) continue;
        if (idx >= s.n) {
            idx -= s.n;
            continue;
        }
        uint32_t k = (uint32_t)s.T * s.C;
        if (s.dtype == 0) {
            const uint8_t *v = s.values + 4u * k * idx;
            for (uint32_t j = 0; j < k; j++) dst[j] = rdf32(v + 4u * j);
        } else {
            const uint8_t *v = s.values + 2u * k * idx;
            for (uint32_t j = 0; j < k; j++) dst[j] = (float)(int16_t)rd16(v + 2u * j) * s.scale;
        }
        return s.labels[idx];
    }
    return -1;
}

uint8_t data_max_label(uint8_t slot) {
    uint8_t mx = 0;
    dseg_t s;
    for (int i = 0; i < nblobs; i++)
        if (blobs[i].kind == BLOB_DATA && blobs[i].slot == slot && !seg_of(i, &s))
            for (uint32_t j = 0; j < s.n; j++) mx = s.labels[j] > mx ? s.labels[j] : mx;
    return mx;
}
