/*
 * The arena: one static block sized at build time (ODL_ARENA_BYTES).  Long-lived blobs (the model, the
 * dataset segments, a transfer in progress) are kept packed from its bottom in arrival order and moved
 * down when one is freed; the top part is the transient region a round or an evaluation plans its
 * buffers in.  Nothing is allocated anywhere else after start-up.
 */
#ifndef ODL_STORE_H
#define ODL_STORE_H

#include "odl.h"

#ifndef ODL_ARENA_BYTES
#define ODL_ARENA_BYTES (ODL_SRAM_BYTES - 24576u) /* 320 KiB minus the firmware reserve (stack, static, link) */
#endif
#define ODL_MAX_BLOBS 48

enum { BLOB_MODEL = 1, BLOB_DATA = 2, BLOB_PENDING = 3 };

typedef struct {
    uint32_t off, len; /* len rounded up to 8 */
    uint32_t used;     /* bytes of content */
    uint8_t kind, slot;
} blob_t;

extern uint8_t odl_arena[ODL_ARENA_BYTES];

void store_reset(void);
int store_alloc(uint8_t kind, uint8_t slot, uint32_t len); /* blob index or -1 */
void store_free(int idx);
uint8_t *store_ptr(int idx);
blob_t *store_blob(int idx);
int store_count(void);
int store_find(uint8_t kind, int from); /* first blob of that kind at index >= from, or -1 */
uint32_t store_top(void);              /* bytes used by blobs */
uint32_t store_free_bytes(void);       /* arena bytes above the blobs */
uint32_t store_bytes_of(uint8_t kind); /* total content bytes of blobs of a kind */
uint8_t *store_transient(void);        /* 8-aligned start of the transient region */
/* A round or an evaluation declares the transient bytes its memory plan reserved (0: none).  In builds with
 * AddressSanitizer (the native tests) every arena byte above the blobs and that reservation is poisoned, so a
 * job that writes past what it reserved -- and past what ROUND_INFO reported and the estimator predicted -- is
 * a sanitizer report rather than a silent write into free arena space; so is each blob's padding to 8 bytes
 * (a read past a dataset's last value).  Elsewhere this does nothing. */
void store_reserve(uint32_t transient_bytes);

/* ---- dataset slots (segments = received dataset blobs) ---- */
typedef struct {
    uint16_t n, T;
    uint8_t C, dtype;
    float scale;
    const uint8_t *labels;
    const uint8_t *values;
} dseg_t;

/* Parse a dataset blob header (docs/protocol.md §5.3); 0 ok or an E_* code with a message. */
int data_parse(const uint8_t *blob, uint32_t len, dseg_t *out, char *msg, size_t cap);
uint32_t data_count(uint8_t slot);
int data_shape(uint8_t slot, uint16_t *T, uint8_t *C, uint8_t *dtype);
uint32_t data_bytes(uint8_t slot);
void data_clear(uint8_t slot);
/* Window i of a slot as floats into dst (T*C values); returns its label. */
int data_window(uint8_t slot, uint32_t i, float *dst);
uint8_t data_max_label(uint8_t slot);

#endif
