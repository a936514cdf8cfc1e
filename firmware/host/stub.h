#ifndef ODL_STUB_H
#define ODL_STUB_H

#include <setjmp.h>

#include "../core/wire.h"

typedef struct {
    const uint8_t *in;
    size_t in_len, in_pos, chunk; /* chunk: bytes per board_link_read (0 = all) */
    size_t tx_free;
    frame_dec_t out_dec;
    unsigned long frames_out, resets;
    void (*on_frame)(const frame_dec_t *d);
    jmp_buf reset_env;
} stub_link_t;

extern stub_link_t stub;

#endif
