/*
 * Training rounds and evaluations as resumable jobs: each job_step() does one window (forward + backward,
 * or forward only), or the batch end (SGD update, D7 marker, BATCH_REPORT), so the main loop serves the
 * link between steps (docs/protocol.md §2: long work never blocks the link).
 */
#ifndef ODL_TRAIN_H
#define ODL_TRAIN_H

#include "model.h"

enum { JOB_NONE = 0, JOB_TRAIN = 1, JOB_EVAL = 2 };
enum { ROUND_DONE_OK = 0, ROUND_ABORTED = 1, ROUND_FAILED = 2 };

typedef struct {
    uint8_t mode, flags;
    uint16_t epochs, batch, warmup_epochs;
    float lr, warmup_lr;
    uint32_t seed;
    uint64_t layer_mask;
    /* protocol v2: the robust round (docs/protocol.md §3.6); all zero / 1.0 = the v1 round */
    uint16_t n_val;         /* the last n_val windows of slot 0 are the validation set */
    uint8_t patience;       /* early stop after this many validation passes without a better one */
    uint8_t val_flags;      /* VAL_RESTORE_BEST | VAL_SELECT_F1 */
    float feature_lr_scale; /* main phase: lr multiplier outside the last two Dense layers */
    float clip_norm;        /* main phase: global L2 norm of the batch-mean gradient clipped to this (0: off) */
    float l2sp;             /* refused with UNSUPPORTED when > 0 (no anchor buffer on this firmware) */
} train_cfg_t;

enum { VAL_RESTORE_BEST = 1, VAL_SELECT_F1 = 2 };

typedef struct {
    uint8_t kind;
    volatile uint8_t abort;
    uint16_t round_id;
    plan_t plan;
    /* training */
    train_cfg_t cfg;
    uint64_t masks[2];
    uint16_t phase_epochs[2];
    float phase_lr[2];
    uint8_t phase, n_phases;
    uint8_t phase_kind[2]; /* BATCH_REPORT.phase: 0 warm-up, 1 main */
    uint32_t n;          /* windows in the slot */
    uint16_t per_epoch;  /* batches per epoch */
    uint16_t epoch;      /* within the phase */
    uint32_t gepoch;     /* epochs since the round started (shuffle key) */
    uint16_t b;          /* batch within the epoch */
    uint32_t k;          /* window within the batch */
    double b_loss;
    uint32_t b_correct;
    double e_loss;
    uint32_t e_n, e_correct;
    double last_loss;
    uint32_t last_n, last_correct;
    uint16_t epochs_done;
    uint32_t batches_done;
    uint64_t t0, t_prev, c0, c_prev;
    /* validation passes (protocol v2) */
    uint8_t val_active;  /* a validation pass is running (one window per step) */
    uint8_t has_best, at_best, since_best;
    uint16_t best_epoch;
    uint8_t head[2];     /* descriptor indices of the last two Dense layers (0xFF: none) */
    uint32_t vi;         /* window within the pass */
    float v_sum, best_loss, best_f1;
    float *best_w;       /* the best pass's trained tensors (VAL_RESTORE_BEST), after the plan region */
    uint64_t best_mask;  /* descriptor layers whose trainable tensors best_w holds */
    /* evaluation */
    uint8_t slot;
    uint32_t i;
    double eval_loss;
    uint16_t conf[ODL_MAX_CLASSES_EVAL * ODL_MAX_CLASSES_EVAL];
} job_t;

extern job_t odl_job;

/* Memory a round needs in the transient region (max over its phases), 0 on mask error. */
uint32_t train_plan_bytes(const model_t *m, const uint64_t *masks, int n_phases);
/* Bytes of the best-weights buffer of a robust round: the trainable tensors of the layers in `mask`. */
uint32_t train_best_bytes(const model_t *m, uint64_t mask);
/* Start a round (checks done by the caller); returns the ROUND_INFO estimate in *est_cycles. */
/* n: windows in slot 0 (validation windows included); plan_bytes: train_plan_bytes() of the round, after
 * which (8-aligned) the best-weights buffer of a robust round is placed. */
void train_start(const model_t *m, float *weights, const train_cfg_t *cfg, const uint64_t masks[2], uint16_t round_id,
                 uint32_t n, uint32_t plan_bytes, uint64_t *est_cycles, uint32_t *total_batches);
void eval_start(const model_t *m, float *weights, uint8_t slot, uint16_t round_id);
/* One step of the running job; returns 0 when the job has finished (its event was emitted). */
int job_step(const model_t *m, float *weights);

/* Order of window `i` of epoch `e` (docs/protocol.md §5.4: a keyed Feistel permutation). */
uint32_t odl_perm(uint32_t seed, uint32_t epoch, uint32_t n, uint32_t i);

/* One window through a bound plan (input in plan.x0): forward returns the loss and the prediction;
 * backward accumulates the gradients of the trainable layers. */
float odl_forward(plan_t *p, int label, int *pred);
void odl_backward(plan_t *p, int label);
/* One training window the way a round runs it (input in plan.x0): forward + backward, or with a grouped head
 * (plan.group > 1) the frozen layers now and the head when the group is full or `last` is set.  Returns how
 * many windows completed (0 .. plan.group): their losses, predictions, and labels in plan.glabel, in window
 * order. */
int odl_train_window(plan_t *p, int label, int last, float *losses, int *preds);
/* BatchNorm scale/shift of a bound plan (after plan_bind). */
void plan_prepare(plan_t *p);

/* Cycle-cost estimate of one batch of n windows for a plan (ROUND_INFO). */
uint64_t train_estimate_batch(const plan_t *p, uint32_t n);

#endif
