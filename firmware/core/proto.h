/* Protocol v1 on the board side: the link, the request handlers, events, streaming and the main loop. */
#ifndef ODL_PROTO_H
#define ODL_PROTO_H

#include "odl.h"

/* Entry point of every target: never returns. */
void odl_main(void) __attribute__((noreturn));
/* One pass of the main loop (host tests drive it directly); returns 1 if it did any work. */
int odl_poll(void);
/* Start-up of the core (after board_init). */
void odl_init(void);

/* events (used by the jobs) */
uint64_t odl_marker(void); /* D7 edge now if the marker is enabled; returns the tick of the edge */
void odl_emit_batch_report(uint16_t round_id, uint8_t phase, uint16_t epoch, uint16_t batch, uint16_t per_epoch,
                           uint16_t n, float loss, uint64_t t0, uint64_t t1, uint64_t cycles);
void odl_emit_round_done(uint16_t round_id, uint8_t status, uint8_t error, uint16_t epochs, uint16_t best_epoch,
                         uint32_t batches, float loss, float acc, uint64_t t0, uint64_t t1, uint64_t cycles);
void odl_emit_val_report(uint16_t round_id, uint16_t epoch, uint16_t n, uint8_t best, float loss, float f1,
                         uint64_t t0, uint64_t t1, uint64_t cycles);
void odl_emit_eval_result(uint8_t slot, uint8_t k, uint16_t n, float loss, uint64_t cycles, const uint16_t *conf);
void odl_log(uint8_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Diagnostics for tests and the benchmark. */
typedef struct {
    uint32_t rx_frames, rx_errors, tx_dropped;
    uint32_t arena_bytes, arena_high_water;
} odl_stats_t;
const odl_stats_t *odl_stats(void);

#endif
