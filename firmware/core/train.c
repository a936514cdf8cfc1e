#include "train.h"

#include <math.h>

#include "board.h"
#include "kernels.h"
#include "proto.h"
#include "store.h"

job_t odl_job;

/* ---------------- shuffle: keyed Feistel permutation with cycle walking ---------------- */
static uint32_t fmix(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

uint32_t odl_perm(uint32_t seed, uint32_t epoch, uint32_t n, uint32_t i) {
    if (n <= 1 || i >= n) return i;
    uint32_t bits = 2;
    while ((1u << bits) < n) bits += 2; /* even width: two halves of bits/2 */
    uint32_t half = bits / 2, mask = (1u << half) - 1u;
    uint32_t key = fmix(seed ^ fmix(epoch + 0x9E3779B9u));
    uint32_t y = i;
    do {
        uint32_t l = y >> half, r = y & mask;
        for (uint32_t rnd = 0; rnd < 4; rnd++) {
            uint32_t f = fmix(r ^ fmix(key + rnd)) & mask;
            uint32_t t = l ^ f;
            l = r;
            r = t;
        }
        y = (l << half) | r;
    } while (y >= n);
    return y;
}

/* ---------------- cost estimate (ROUND_INFO est_cycles) ---------------- */
/* Cycles per operation of this firmware's kernels (x16 fixed point) under the modelled Cortex-M4, fitted to
 * benchmarks/firmware_cycles.py on the paper CNN (T = 20..100, TL and Full: the estimate is within 3 % of
 * the measured batch there; docs/firmware.md).  conv_dx counts the zero products of the padded error like
 * the estimator, although the kernels skip them. */
#define COST_CONV_FWD 46u
#define COST_CONV_DW 50u
#define COST_CONV_DX 45u
#define COST_DENSE_FWD 60u
#define COST_DENSE_DW 79u
#define COST_DENSE_DX 106u
#define COST_ELEM 32u
#define COST_SAMPLE 1500u /* per window: loading it, the layer loop, the loss (cycles) */
#define COST_DENSE_FWD_G 48u /* the grouped head (plan_t.group > 1): 4 windows per weight load */
#define COST_DENSE_DW_G 55u
#define COST_UPDATE 112u  /* per trained parameter per batch: SGD step and zeroing (x16) */

/* conv forward MACs a plan does not compute (rows no pooling reads, rlayer_t.Lu) */
static uint64_t conv_skipped(const plan_t *p) {
    uint64_t m = 0;
    for (int i = 0; i < p->n; i++) {
        const rlayer_t *R = &p->R[i];
        if (R->kind == RK_CONV) m += (uint64_t)(R->Lo - R->Lu) * R->W * R->F * R->C * R->K;
    }
    return m;
}

uint64_t train_estimate_batch(const plan_t *p, uint32_t n) {
    ops_t o;
    plan_ops(p, p->first < p->n, &o);
    const int g = p->group > 1;
    uint64_t s = (o.conv_fwd - conv_skipped(p)) * COST_CONV_FWD + o.conv_dw * COST_CONV_DW +
                 o.conv_dx * COST_CONV_DX + o.dense_fwd * (g ? COST_DENSE_FWD_G : COST_DENSE_FWD) +
                 o.dense_dw * (g ? COST_DENSE_DW_G : COST_DENSE_DW) + o.dense_dx * COST_DENSE_DX +
                 o.elementwise * COST_ELEM;
    return (s * n + (uint64_t)p->n_trained * COST_UPDATE) / 16u + (uint64_t)COST_SAMPLE * n;
}

/* Cycles of one validation pass of n windows (forward only, one window at a time) on a plan. */
static uint64_t val_estimate(const plan_t *p, uint32_t n) {
    ops_t o;
    plan_ops(p, 0, &o);
    uint64_t s = (o.conv_fwd - conv_skipped(p)) * COST_CONV_FWD + o.dense_fwd * COST_DENSE_FWD +
                 o.elementwise * COST_ELEM;
    return s * n / 16u + (uint64_t)COST_SAMPLE * n;
}

/* ---------------- plans ---------------- */
/* Trainable tensors of a descriptor layer: kernel (+ bias); BatchNorm: gamma, beta (its statistics are frozen). */
static int trained_tensors(const mlayer_t *L) { return L->kind == K_BATCHNORM ? 2 : L->n_tensors; }

uint32_t train_best_bytes(const model_t *m, uint64_t mask) {
    uint32_t n = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (mask >> i & 1u)
            for (int t = 0; t < trained_tensors(&m->L[i]); t++) n += m->L[i].wlen[t];
    return (4u * n + 7u) & ~7u;
}

/* Copy the trainable tensors of the layers in `mask` between the weights and a buffer (to_buf: weights -> buf). */
static void best_copy(const model_t *m, uint64_t mask, float *w, float *buf, int to_buf) {
    for (int i = 0; i < m->n_layers; i++)
        if (mask >> i & 1u)
            for (int t = 0; t < trained_tensors(&m->L[i]); t++) {
                float *src = w + m->L[i].woff[t];
                uint32_t len = m->L[i].wlen[t];
                if (to_buf)
                    memcpy(buf, src, 4u * len);
                else
                    memcpy(src, buf, 4u * len);
                buf += len;
            }
}

uint32_t train_plan_bytes(const model_t *m, const uint64_t *masks, int n_phases) {
    plan_t *tmp = &odl_job.plan; /* sizing only: called while no job runs */
    uint32_t mx = 0;
    for (int i = 0; i < n_phases; i++) {
        plan_lower(tmp, m, masks[i]);
        if (tmp->bytes > mx) mx = tmp->bytes;
    }
    return mx;
}

void plan_prepare(plan_t *p) {
    for (int i = 0; i < p->n; i++)
        if (p->R[i].kind == RK_BN) k_bn_prepare(&p->R[i]);
}

static void bind_phase(job_t *j, const model_t *m, float *w) {
    plan_lower(&j->plan, m, j->masks[j->phase]);
    plan_bind(&j->plan, m, w, store_transient());
    plan_prepare(&j->plan);
}

static uint16_t batch_len(const job_t *j) {
    uint32_t start = (uint32_t)j->b * j->cfg.batch;
    uint32_t left = j->n - start;
    return (uint16_t)(left < j->cfg.batch ? left : j->cfg.batch);
}

void train_start(const model_t *m, float *w, const train_cfg_t *cfg, const uint64_t masks[2], uint16_t round_id,
                 uint32_t n, uint32_t plan_bytes, uint64_t *est_cycles, uint32_t *total_batches) {
    job_t *j = &odl_job;
    memset(j, 0, sizeof *j);
    j->kind = JOB_TRAIN;
    j->round_id = round_id;
    j->cfg = *cfg;
    n -= cfg->n_val; /* the last n_val windows of the slot are the validation set, never trained on */
    j->n = n;
    j->per_epoch = (uint16_t)((n + cfg->batch - 1) / cfg->batch);
    j->n_phases = 0;
    if (cfg->warmup_epochs) {
        j->phase_kind[j->n_phases] = 0;
        j->masks[j->n_phases] = masks[0];
        j->phase_epochs[j->n_phases] = cfg->warmup_epochs;
        j->phase_lr[j->n_phases++] = cfg->warmup_lr;
    }
    if (cfg->epochs) {
        j->phase_kind[j->n_phases] = 1;
        j->masks[j->n_phases] = masks[1];
        j->phase_epochs[j->n_phases] = cfg->epochs;
        j->phase_lr[j->n_phases++] = cfg->lr;
    }
    /* the last two Dense layers: the head, trained at lr; the rest at lr * feature_lr_scale */
    j->head[0] = j->head[1] = 0xFF;
    for (int i = m->n_layers - 1, k = 0; i >= 0 && k < 2; i--)
        if (m->L[i].kind == K_DENSE) j->head[k++] = (uint8_t)i;
    /* estimate: every phase's batches (full ones and the last partial one), and the validation passes */
    uint64_t est = 0;
    for (int ph = 0; ph < j->n_phases; ph++) {
        plan_lower(&j->plan, m, j->masks[ph]);
        uint32_t full = n / cfg->batch, rest = n % cfg->batch;
        uint64_t e = (uint64_t)full * train_estimate_batch(&j->plan, cfg->batch);
        if (rest) e += train_estimate_batch(&j->plan, rest);
        if (cfg->n_val) e += val_estimate(&j->plan, cfg->n_val);
        est += e * j->phase_epochs[ph];
        if (ph == 0 && cfg->n_val) est += val_estimate(&j->plan, cfg->n_val); /* the pass before the first epoch */
    }
    *est_cycles = est;
    *total_batches = (uint32_t)j->per_epoch * (uint32_t)(cfg->warmup_epochs + cfg->epochs);
    if (cfg->n_val && (cfg->val_flags & VAL_RESTORE_BEST)) {
        j->best_mask = masks[1] | (cfg->warmup_epochs ? masks[0] : 0);
        j->best_w = (float *)(void *)(store_transient() + ((plan_bytes + 7u) & ~7u));
    }
    j->phase = 0;
    bind_phase(j, m, w);
    board_job_state(1);
    j->t0 = j->t_prev = odl_marker(); /* D7 edge at the start of the round */
    j->c0 = j->c_prev = board_cycles();
    if (cfg->n_val) j->val_active = 1; /* VAL(0): the starting weights are the first candidate */
}

void eval_start(const model_t *m, float *w, uint8_t slot, uint16_t round_id) {
    job_t *j = &odl_job;
    memset(j, 0, sizeof *j);
    j->kind = JOB_EVAL;
    j->round_id = round_id;
    j->slot = slot;
    j->n = data_count(slot);
    plan_lower(&j->plan, m, 0);
    plan_bind(&j->plan, m, w, store_transient());
    plan_prepare(&j->plan);
    board_job_state(1);
    j->c0 = board_cycles();
    j->t0 = board_ticks();
}

/* forward pass of layers [i0, i1) of the bound plan; returns the loss (softmax), *pred the predicted class */
static float forward_range(plan_t *p, int i0, int i1, int label, int *pred) {
    float loss = 0.0f;
    for (int i = i0; i < i1; i++) {
        rlayer_t *R = &p->R[i];
        switch (R->kind) {
        case RK_CONV: k_conv_fwd(R); break;
        case RK_DENSE: k_dense_fwd(R); break;
        case RK_RELU: k_relu_fwd(R); break;
        case RK_AVGPOOL:
        case RK_MAXPOOL: k_pool_fwd(R); break;
        case RK_GAP:
        case RK_GMP: k_global_fwd(R); break;
        case RK_BN: k_bn_fwd(R); break;
        case RK_SOFTMAX: loss = k_softmax_fwd(R, label, pred); break;
        default: break;
        }
    }
    return loss;
}

/* forward pass of the bound plan on plan.x0; returns the loss, *pred the predicted class */
float odl_forward(plan_t *p, int label, int *pred) { return forward_range(p, 0, p->n, label, pred); }

/* a layer of the grouped head with its pointers moved to window slot s */
static rlayer_t at_slot(const rlayer_t *R, int s) {
    rlayer_t S = *R;
    S.in += (uint32_t)s * R->in_gs;
    S.out += (uint32_t)s * R->out_gs;
    return S;
}

/* The grouped head over the gn windows of the group: forward, loss, backward with the gradients added in
 * window order -- per element the same operations in the same order as gn per-window passes. */
static void head_group(plan_t *p, int gn, float *losses, int *preds) {
    for (int i = p->first; i < p->n; i++) {
        rlayer_t *R = &p->R[i];
        if (R->kind == RK_DENSE) {
            k_dense_fwd_group(R, gn);
        } else if (R->kind == RK_RELU && !R->fused) {
            for (int s = 0; s < gn; s++) {
                rlayer_t S = at_slot(R, s);
                k_relu_fwd(&S);
            }
        } else if (R->kind == RK_SOFTMAX) {
            for (int s = 0; s < gn; s++) {
                rlayer_t S = at_slot(R, s);
                losses[s] = k_softmax_fwd(&S, p->glabel[s], &preds[s]);
            }
        }
    }
    const uint32_t es = p->e_len;
    float *cur = p->e0, *nxt = p->e1;
    for (int i = p->n - 1; i >= (int)p->first; i--) {
        rlayer_t *R = &p->R[i];
        if (R->kind == RK_SOFTMAX) {
            for (int s = 0; s < gn; s++) {
                rlayer_t S = at_slot(R, s);
                k_softmax_bwd(&S, p->glabel[s], cur + (uint32_t)s * es);
            }
        } else if (R->kind == RK_DENSE) {
            k_dense_bwd_group(R, gn, cur, nxt, es);
            if (R->needs_dx) {
                float *t = cur;
                cur = nxt;
                nxt = t;
            }
        } else if (R->kind == RK_RELU && R->needs_dx) {
            for (int s = 0; s < gn; s++) {
                rlayer_t S = at_slot(R, s);
                k_relu_bwd(&S, cur + (uint32_t)s * es);
            }
        }
    }
}

int odl_train_window(plan_t *p, int label, int last, float *losses, int *preds) {
    if (p->group <= 1) {
        p->glabel[0] = (int16_t)label;
        losses[0] = odl_forward(p, label, &preds[0]);
        odl_backward(p, label);
        return 1;
    }
    /* the frozen layers, the head's input written to this window's slot */
    const int s = p->gcount, lw = p->lastw, first = p->first;
    for (int i = lw; i < first; i++) {
        p->R[i].out += (uint32_t)s * p->R[i].out_gs;
        if (i > lw) p->R[i].in += (uint32_t)s * p->R[i].in_gs;
    }
    int unused;
    forward_range(p, 0, first, label, &unused);
    for (int i = lw; i < first; i++) {
        p->R[i].out -= (uint32_t)s * p->R[i].out_gs;
        if (i > lw) p->R[i].in -= (uint32_t)s * p->R[i].in_gs;
    }
    p->glabel[s] = (int16_t)label;
    p->gcount++;
    if (p->gcount < p->group && !last) return 0;
    const int gn = p->gcount;
    p->gcount = 0;
    head_group(p, gn, losses, preds);
    return gn;
}

void odl_backward(plan_t *p, int label) {
    float *cur = p->e0, *nxt = p->e1;
    for (int i = p->n - 1; i >= (int)p->first; i--) {
        rlayer_t *R = &p->R[i];
        switch (R->kind) {
        case RK_SOFTMAX: k_softmax_bwd(R, label, cur); break;
        case RK_CONV: k_conv_bwd(R, cur, nxt); break;
        case RK_DENSE: k_dense_bwd(R, cur, nxt); break;
        case RK_RELU:
            if (R->needs_dx) k_relu_bwd(R, cur);
            break;
        case RK_BN: k_bn_bwd(R, cur); break;
        case RK_AVGPOOL:
        case RK_MAXPOOL:
            if (R->needs_dx) k_pool_bwd(R, cur, nxt);
            break;
        case RK_GAP:
        case RK_GMP:
            if (R->needs_dx) k_global_bwd(R, cur, nxt);
            break;
        default: break;
        }
        if ((R->kind == RK_CONV || R->kind == RK_DENSE || R->kind == RK_AVGPOOL || R->kind == RK_MAXPOOL ||
             R->kind == RK_GAP || R->kind == RK_GMP) &&
            R->needs_dx) {
            float *t = cur;
            cur = nxt;
            nxt = t;
        }
    }
}

/* The robust step (protocol v2, main phase; docs/protocol.md §3.6), exactly device/engine's
 * Model._robust_update in float32: g = acc / n; if clip_norm > 0: s = sum of g*g over every trained array
 * in layer order (kernel, then bias), one running float32 sum, norm = sqrtf(s), and if norm > clip_norm every
 * g *= clip_norm / norm; then w -= g * lr_a with lr_a = lr * feature_lr_scale (rounded once) for the layers
 * outside the last two Dense layers, lr for those. */
static void robust_update(job_t *j, plan_t *p, uint32_t n, float lr) {
    const float nf = (float)n;
    float s = 0.0f;
    for (int i = 0; i < p->n; i++) {
        rlayer_t *R = &p->R[i];
        if (!R->trainable) continue;
        uint32_t nw = R->kind == RK_BN ? R->C : (uint32_t)(R->kind == RK_CONV ? R->K : 1) * R->C * R->F;
        uint32_t nb = R->gb ? (R->kind == RK_BN ? R->C : R->F) : 0;
        for (uint32_t k = 0; k < nw; k++) {
            float g = R->gw[k] / nf;
            R->gw[k] = g;
            float q = g * g;
            s = s + q;
        }
        for (uint32_t k = 0; k < nb; k++) {
            float g = R->gb[k] / nf;
            R->gb[k] = g;
            float q = g * g;
            s = s + q;
        }
    }
    float scale = 1.0f;
    int clip = 0;
    if (j->cfg.clip_norm > 0.0f) {
        float norm = sqrtf(s);
        if (norm > j->cfg.clip_norm) {
            scale = j->cfg.clip_norm / norm;
            clip = 1;
        }
    }
    const float lr_feat = lr * j->cfg.feature_lr_scale;
    for (int i = 0; i < p->n; i++) {
        rlayer_t *R = &p->R[i];
        if (!R->trainable) continue;
        uint32_t nw = R->kind == RK_BN ? R->C : (uint32_t)(R->kind == RK_CONV ? R->K : 1) * R->C * R->F;
        uint32_t nb = R->gb ? (R->kind == RK_BN ? R->C : R->F) : 0;
        int head = R->src == j->head[0] || R->src == j->head[1];
        float la = head ? lr : lr_feat;
        for (uint32_t k = 0; k < nw; k++) {
            float g = R->gw[k];
            if (clip) g = g * scale;
            g = g * la;
            R->w[k] = R->w[k] - g;
        }
        for (uint32_t k = 0; k < nb; k++) {
            float g = R->gb[k];
            if (clip) g = g * scale;
            g = g * la;
            R->b[k] = R->b[k] - g;
        }
    }
    plan_zero_grads(p);
}

static int robust_step(const job_t *j) {
    return j->phase_kind[j->phase] == 1 && (j->cfg.clip_norm > 0.0f || j->cfg.feature_lr_scale != 1.0f);
}

static void update(plan_t *p, uint32_t n, float lr) {
    for (int i = 0; i < p->n; i++) {
        rlayer_t *R = &p->R[i];
        if (!R->trainable) continue;
        uint32_t nw = R->kind == RK_BN ? R->C : (uint32_t)(R->kind == RK_CONV ? R->K : 1) * R->C * R->F;
        k_sgd(R->w, R->gw, nw, (float)n, lr); /* zeroes the accumulator too */
        if (R->gb) k_sgd(R->b, R->gb, R->kind == RK_BN ? R->C : R->F, (float)n, lr);
    }
}

static void finish_train(job_t *j, const model_t *m, float *w, uint8_t status, uint8_t error) {
    plan_export(&j->plan, m, w);
    if (status == ROUND_DONE_OK && j->best_w && j->has_best && !j->at_best)
        best_copy(m, j->best_mask, w, j->best_w, 0); /* the best validation pass's weights back */
    uint64_t t = j->t_prev, c = board_cycles();
    if (status == ROUND_ABORTED) t = board_ticks();
    double loss = j->last_n ? j->last_loss / j->last_n : 0.0;
    double acc = j->last_n ? (double)j->last_correct / j->last_n : 0.0;
    board_job_state(0);
    j->kind = JOB_NONE;
    odl_emit_round_done(j->round_id, status, error, j->epochs_done, j->has_best ? j->best_epoch : 0, j->batches_done,
                        (float)loss, (float)acc, j->t0, t, c - j->c0);
}

/* After an epoch (and its validation pass): the next epoch, the next phase, or the end of the round. */
static int next_epoch(job_t *j, const model_t *m, float *w) {
    if (++j->epoch < j->phase_epochs[j->phase]) return 1;
    j->epoch = 0;
    if (j->phase + 1 < j->n_phases) {
        plan_export(&j->plan, m, w);
        j->phase++;
        bind_phase(j, m, w);
        return 1;
    }
    finish_train(j, m, w, ROUND_DONE_OK, 0);
    return 0;
}

/* Macro-F1 of the confusion counts in float32 (device/engine macro_f1_f32): per class f = 2tp / (2tp + fp + fn)
 * over the classes present in the labels or the predictions, summed in class order, divided by their number. */
static float macro_f1(const uint16_t *conf, int k) {
    float total = 0.0f;
    int count = 0;
    for (int c = 0; c < k; c++) {
        uint32_t tp = conf[c * k + c], fp = 0, fn = 0;
        for (int r = 0; r < k; r++)
            if (r != c) fp += conf[r * k + c], fn += conf[c * k + r];
        uint32_t den = 2u * tp + fp + fn;
        if (!den) continue;
        float f = (float)(2u * tp) / (float)den;
        total = total + f;
        count++;
    }
    return count ? total / (float)count : NAN;
}

/* One step of a validation pass over windows n .. n + n_val - 1 of slot 0 (stored order), forward only on the
 * bound plan; at its end: the best rule, the best weights' copy, D7, VAL_REPORT, early stopping. */
static int val_step(job_t *j, const model_t *m, float *w) {
    const int k = m->n_classes;
    if (j->vi == 0) {
        j->v_sum = 0.0f;
        memset(j->conf, 0, sizeof j->conf);
    }
    if (j->vi < j->cfg.n_val) {
        int pred = 0;
        int label = data_window(0, j->n + j->vi, j->plan.x0);
        float loss = odl_forward(&j->plan, label, &pred);
        j->v_sum = j->v_sum + loss;
        uint32_t cell = (uint32_t)label * (uint32_t)k + (uint32_t)pred;
        if (j->conf[cell] < 0xFFFFu) j->conf[cell]++;
        j->vi++;
        return 1;
    }
    float loss = j->v_sum / (float)j->cfg.n_val;
    float f1 = macro_f1(j->conf, k);
    int better;
    if (!j->has_best)
        better = 1;
    else if (j->cfg.val_flags & VAL_SELECT_F1)
        better = f1 > j->best_f1 || (f1 == j->best_f1 && loss < j->best_loss);
    else
        better = loss < j->best_loss;
    uint16_t done = (uint16_t)j->gepoch;
    if (better) {
        j->has_best = 1, j->at_best = 1, j->since_best = 0;
        j->best_loss = loss, j->best_f1 = f1, j->best_epoch = done;
        if (j->best_w) {
            plan_export(&j->plan, m, w); /* a trained folded conv: its canonical weights as of now */
            best_copy(m, j->best_mask, w, j->best_w, 1);
        }
    } else if (j->since_best < 0xFF) {
        j->since_best++;
    }
    uint64_t t = odl_marker();
    uint64_t c = board_cycles();
    odl_emit_val_report(j->round_id, done, (uint16_t)j->cfg.n_val, (uint8_t)better, loss, f1, j->t_prev, t, c - j->c_prev);
    j->t_prev = t;
    j->c_prev = c;
    j->val_active = 0;
    j->vi = 0;
    uint32_t total = (uint32_t)j->cfg.warmup_epochs + j->cfg.epochs;
    if (done == 0) return 1; /* VAL(0): the first epoch follows */
    if (j->cfg.patience && j->since_best >= j->cfg.patience && done < total) {
        finish_train(j, m, w, ROUND_DONE_OK, 0); /* early stop */
        return 0;
    }
    return next_epoch(j, m, w);
}

int job_step(const model_t *m, float *w) {
    job_t *j = &odl_job;
    if (j->kind == JOB_EVAL) {
        if (j->abort) {
            board_job_state(0);
            j->kind = JOB_NONE;
            return 0;
        }
        if (j->i < j->n) {
            int pred = 0;
            int label = data_window(j->slot, j->i, j->plan.x0);
            odl_forward(&j->plan, label, &pred);
            const rlayer_t *S = &j->plan.R[j->plan.n - 1];
            float pl = S->out[label] > 1e-7f ? S->out[label] : 1e-7f;
            j->eval_loss += -log((double)pl);
            uint32_t cell = (uint32_t)label * m->n_classes + (uint32_t)pred;
            if (j->conf[cell] < 0xFFFFu) j->conf[cell]++;
            j->i++;
            return 1;
        }
        board_job_state(0);
        j->kind = JOB_NONE;
        odl_emit_eval_result(j->slot, m->n_classes, (uint16_t)(j->n > 0xFFFF ? 0xFFFF : j->n),
                             (float)(j->n ? j->eval_loss / j->n : 0.0), board_cycles() - j->c0, j->conf);
        return 0;
    }
    if (j->kind != JOB_TRAIN) return 0;
    if (j->abort) { /* the batch in progress never reaches its update */
        finish_train(j, m, w, ROUND_ABORTED, 0);
        return 0;
    }
    if (j->val_active) return val_step(j, m, w);
    uint16_t bn = batch_len(j);
    if (j->k < bn) {
        uint32_t pos = (uint32_t)j->b * j->cfg.batch + j->k;
        uint32_t idx = (j->cfg.flags & 1u) ? odl_perm(j->cfg.seed, j->gepoch, j->n, pos) : pos;
        float losses[ODL_HEAD_GROUP];
        int preds[ODL_HEAD_GROUP];
        int label = data_window(0, idx, j->plan.x0);
        int got = odl_train_window(&j->plan, label, j->k + 1u == bn, losses, preds);
        for (int s = 0; s < got; s++) {
            j->b_loss += losses[s];
            j->b_correct += (uint32_t)(preds[s] == j->plan.glabel[s]);
        }
        j->k++;
        return 1;
    }
    /* end of batch: SGD step, marker, report */
    if (robust_step(j))
        robust_update(j, &j->plan, bn, j->phase_lr[j->phase]);
    else
        update(&j->plan, bn, j->phase_lr[j->phase]);
    j->at_best = 0;
    uint64_t t = odl_marker();
    uint64_t c = board_cycles();
    float mean = (float)(j->b_loss / bn);
    odl_emit_batch_report(j->round_id, j->phase_kind[j->phase], j->epoch, j->b, j->per_epoch, bn,
                          mean, j->t_prev, t, c - j->c_prev);
    j->t_prev = t;
    j->c_prev = c;
    j->batches_done++;
    j->e_loss += j->b_loss;
    j->e_n += bn;
    j->e_correct += j->b_correct;
    j->last_loss = j->e_loss, j->last_n = j->e_n, j->last_correct = j->e_correct;
    j->b_loss = 0;
    j->b_correct = 0;
    j->k = 0;
    if (!isfinite(mean)) {
        odl_log(3, "round %u failed: the loss of batch %u of epoch %u is not finite (learning rate too high?)",
                j->round_id, j->b, j->epoch);
        finish_train(j, m, w, ROUND_FAILED, E_BAD_PARAM);
        return 0;
    }
    if (++j->b < j->per_epoch) return 1;
    /* end of epoch */
    j->b = 0;
    j->epochs_done++;
    j->gepoch++;
    j->e_loss = 0, j->e_n = 0, j->e_correct = 0;
    if (j->cfg.n_val) {
        j->val_active = 1;
        return 1;
    }
    return next_epoch(j, m, w);
}
