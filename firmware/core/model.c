/*
 * Descriptor parsing, shapes, trainable sets, lowering to the runtime graph, and the memory plan.
 * The rules mirror the reference engine (device/engine/graph.py, weights.py) and estimator/arch.py.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>

#define MSG(...) snprintf(msg, cap, __VA_ARGS__)

static const char *KIND_NAME[] = {"?",         "conv1d",    "conv2d", "dense", "relu", "softmax",
                                  "avgpool1d", "maxpool1d", "avgpool2d", "maxpool2d", "gap1d", "gmp1d",
                                  "gap2d",     "gmp2d",     "flatten", "batchnorm", "dropout"};

static int has_params(uint8_t k) { return k == K_CONV1D || k == K_CONV2D || k == K_DENSE || k == K_BATCHNORM; }

int model_parse(model_t *m, const uint8_t *d, uint32_t len, uint32_t weight_bytes, uint32_t *arg0, uint32_t *arg1,
                char *msg, size_t cap) {
    memset(m, 0, sizeof *m);
    *arg0 = *arg1 = 0;
    if (len < 16) {
        MSG("architecture descriptor: %lu bytes is shorter than its 16-byte header", (unsigned long)len);
        return E_BAD_PAYLOAD;
    }
    if (memcmp(d, "ODLA", 4) != 0) {
        MSG("architecture descriptor: magic is not 'ODLA'");
        return E_BAD_PAYLOAD;
    }
    if (d[4] != 1) {
        MSG("architecture descriptor: descriptor version %u is not supported (1)", d[4]);
        *arg0 = 1;
        return E_BAD_VERSION;
    }
    uint8_t n = d[5], rank = d[6], prep = d[7];
    if (len != 16u + 32u * n) {
        MSG("architecture descriptor: descriptor is %lu bytes, %u layers need %u", (unsigned long)len, n, 16u + 32u * n);
        return E_BAD_PAYLOAD;
    }
    if (rank < 1 || rank > 3) {
        MSG("architecture descriptor: input rank %u is not 1..3", rank);
        return E_BAD_PAYLOAD;
    }
    if (prep > 1) {
        MSG("architecture descriptor: preprocessing code %u is unknown", prep);
        return E_BAD_PAYLOAD;
    }
    if (n > ODL_MAX_LAYERS) {
        MSG("model has %u layers, this firmware runs at most %u", n, ODL_MAX_LAYERS);
        *arg0 = n;
        *arg1 = ODL_MAX_LAYERS;
        return E_TOO_LARGE;
    }
    m->n_layers = n;
    m->rank = rank;
    m->prep = prep;
    for (int i = 0; i < 3; i++) m->in[i] = rd16(d + 8 + 2 * i);
    /* current shape: rank r, dims s[0..2] */
    uint16_t s[3] = {m->in[0], rank > 1 ? m->in[1] : 1, rank > 2 ? m->in[2] : 1};
    int r = rank;
    for (int i = 0; i < r; i++)
        if (m->in[i] < 1) {
            MSG("architecture descriptor: input shape has a zero dimension");
            return E_BAD_PAYLOAD;
        }
    m->in_n = (uint32_t)s[0] * s[1] * s[2];
    uint32_t woff = 0;
    uint64_t outs = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *q = d + 16 + 32 * i;
        mlayer_t *L = &m->L[i];
        L->kind = q[0];
        L->use_bias = q[1] & 1;
        L->filters = rd16(q + 2);
        L->kernel = rd16(q + 4);
        L->units = rd16(q + 6);
        L->pool = rd16(q + 8);
        L->stride = rd16(q + 10);
        L->param = rdf32(q + 12);
        memcpy(L->name, q + 16, 16);
        L->name[16] = 0;
        if (L->kind < 1 || L->kind > K_LAST) {
            MSG("layer %d: unknown layer kind code %u", i, L->kind);
            *arg0 = (uint32_t)i;
            *arg1 = L->kind;
            return E_UNKNOWN_LAYER;
        }
        /* input shape (canonical) */
        L->in_rank = (uint8_t)r;
        if (r == 1) {
            L->in_l = s[0], L->in_w = 1, L->in_c = 1;
        } else if (r == 2) {
            L->in_l = s[0], L->in_w = 1, L->in_c = s[1];
        } else {
            L->in_l = s[0], L->in_w = s[1], L->in_c = s[2];
        }
        L->in_n = (uint32_t)L->in_l * L->in_w * L->in_c;
        int need = 0;
        uint8_t k = L->kind;
        const char *kn = KIND_NAME[k];
        uint16_t o[3] = {s[0], s[1], s[2]};
        int orank = r;
        switch (k) {
        case K_CONV1D:
        case K_CONV2D:
            need = k == K_CONV1D ? 2 : 3;
            if (r != need) goto bad_rank;
            if (L->filters < 1) {
                MSG("architecture descriptor: layer %d (%s): filters must be >= 1", i, kn);
                goto invalid;
            }
            if (L->kernel < 1 || s[0] < L->kernel) {
                MSG("architecture descriptor: layer %d (%s): kernel %u does not fit input length %u", i, kn, L->kernel, s[0]);
                goto invalid;
            }
            o[0] = (uint16_t)(s[0] - L->kernel + 1);
            if (k == K_CONV1D) o[1] = L->filters, o[2] = 1;
            else o[2] = L->filters;
            break;
        case K_DENSE:
            if (r != 1) {
                need = 1;
                goto bad_rank;
            }
            if (L->units < 1) {
                MSG("architecture descriptor: layer %d (dense): units must be >= 1", i);
                goto invalid;
            }
            o[0] = L->units;
            break;
        case K_AVGPOOL1D:
        case K_MAXPOOL1D:
        case K_AVGPOOL2D:
        case K_MAXPOOL2D: {
            need = (k == K_AVGPOOL1D || k == K_MAXPOOL1D) ? 2 : 3;
            if (r != need) goto bad_rank;
            uint16_t st = L->stride ? L->stride : L->pool;
            if (L->pool < 1 || s[0] < L->pool) {
                MSG("architecture descriptor: layer %d (%s): pool %u does not fit input length %u", i, kn, L->pool, s[0]);
                goto invalid;
            }
            o[0] = (uint16_t)((s[0] - L->pool) / st + 1);
            break;
        }
        case K_GAP1D:
        case K_GMP1D:
        case K_GAP2D:
        case K_GMP2D:
            need = (k == K_GAP1D || k == K_GMP1D) ? 2 : 3;
            if (r != need) goto bad_rank;
            o[0] = r == 2 ? s[1] : s[2];
            orank = 1;
            break;
        case K_FLATTEN: {
            uint32_t p = (uint32_t)s[0] * (r > 1 ? s[1] : 1) * (r > 2 ? s[2] : 1);
            if (p > 0xFFFF) {
                MSG("architecture descriptor: layer %d (flatten): %lu values are too many", i, (unsigned long)p);
                goto invalid;
            }
            o[0] = (uint16_t)p;
            orank = 1;
            break;
        }
        default: /* relu, softmax, batchnorm, dropout keep the shape */
            break;
        }
        if (k == K_DENSE) orank = 1;
        if (k == K_CONV1D) orank = 2;
        r = orank;
        s[0] = o[0];
        s[1] = r > 1 ? o[1] : 1;
        s[2] = r > 2 ? o[2] : 1;
        L->out_rank = (uint8_t)r;
        if (r == 1) {
            L->out_l = s[0], L->out_w = 1, L->out_c = 1;
        } else if (r == 2) {
            L->out_l = s[0], L->out_w = 1, L->out_c = s[1];
        } else {
            L->out_l = s[0], L->out_w = s[1], L->out_c = s[2];
        }
        L->out_n = (uint32_t)L->out_l * L->out_w * L->out_c;
        outs += L->out_n;
        /* parameters, Keras order */
        uint32_t cin = L->in_rank == 1 ? L->in_l : L->in_c;
        L->n_tensors = 0;
        if (k == K_CONV1D || k == K_CONV2D) {
            L->wlen[0] = (uint32_t)L->kernel * cin * L->filters;
            L->n_tensors = 1;
            if (L->use_bias) L->wlen[L->n_tensors++] = L->filters;
        } else if (k == K_DENSE) {
            L->wlen[0] = (uint32_t)L->in_l * L->units;
            L->n_tensors = 1;
            if (L->use_bias) L->wlen[L->n_tensors++] = L->units;
        } else if (k == K_BATCHNORM) {
            uint32_t c = L->in_rank == 1 ? L->in_l : L->in_c;
            for (int t = 0; t < 4; t++) L->wlen[t] = c;
            L->n_tensors = 4;
        }
        for (int t = 0; t < L->n_tensors; t++) {
            L->woff[t] = woff;
            woff += L->wlen[t];
        }
        continue;
    bad_rank:
        MSG("architecture descriptor: layer %d (%s) needs a rank-%d input, got rank %d", i, kn, need, r);
    invalid:
        *arg0 = (uint32_t)i;
        return E_BAD_PAYLOAD;
    }
    if (n == 0) {
        MSG("unsupported network: the model has no layers");
        *arg0 = 0xFFFFFFFFu;
        return E_UNKNOWN_LAYER;
    }
    /* what the engine can run (device/engine/graph.check_supported) */
    for (int i = 0; i < n; i++) {
        mlayer_t *L = &m->L[i];
        const char *bad = NULL;
        char why[80];
        if ((L->kind == K_CONV1D || L->kind == K_CONV2D) && L->stride > 1) {
            snprintf(why, sizeof why, "conv stride %u (only 1 is supported)", L->stride);
            bad = why;
        } else if (L->kind == K_SOFTMAX && i != n - 1) {
            bad = "softmax must be the last layer";
        } else if (L->kind == K_DROPOUT && !(L->param >= 0.0f && L->param < 1.0f)) {
            bad = "dropout rate outside [0, 1)";
        } else if (L->kind == K_BATCHNORM && !(L->param > 0.0f)) {
            bad = "BatchNorm epsilon must be > 0";
        } else if (i == n - 1 && L->kind != K_SOFTMAX) {
            bad = "the last layer must be softmax (cross-entropy training)";
        }
        if (bad) {
            MSG("unsupported network: layer %d (%s): %s", i, KIND_NAME[L->kind], bad);
            *arg0 = (uint32_t)i;
            *arg1 = L->kind;
            return E_UNKNOWN_LAYER;
        }
    }
    m->params = woff;
    if (weight_bytes != 4u * woff) {
        MSG("blob carries %lu weight bytes, the architecture has %lu float32 parameters (%lu B)",
            (unsigned long)weight_bytes, (unsigned long)woff, (unsigned long)(4u * woff));
        *arg0 = weight_bytes;
        *arg1 = 4u * woff;
        return E_BAD_PARAM;
    }
    m->n_classes = (uint8_t)(m->L[n - 1].out_n > 255 ? 255 : m->L[n - 1].out_n);
    m->infer_mem = (uint32_t)(4u * (woff + m->in_n + outs));
    m->desc_len = len;
    return 0;
}

int model_trainable(const model_t *m, uint8_t mode, uint64_t mask, uint64_t *out, char *msg, size_t cap) {
    uint64_t r = 0;
    int dense[ODL_MAX_LAYERS], nd = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->L[i].kind == K_DENSE) dense[nd++] = i;
    switch (mode) {
    case MODE_FULL:
        for (int i = 0; i < m->n_layers; i++)
            if (has_params(m->L[i].kind)) r |= 1ull << i;
        break;
    case MODE_TL:
    case MODE_LAST:
        if (!nd) {
            MSG("the model has no Dense layer to train with '%s'", mode == MODE_TL ? "tl" : "last");
            return E_BAD_PARAM;
        }
        r |= 1ull << dense[nd - 1];
        if (mode == MODE_TL && nd > 1) r |= 1ull << dense[nd - 2];
        break;
    case MODE_MASK:
        if (!mask || (m->n_layers < 64 && (mask >> m->n_layers))) {
            MSG("layer_mask 0x%llX selects no layer or layers beyond %u", (unsigned long long)mask, m->n_layers);
            return E_BAD_PARAM;
        }
        for (int i = 0; i < m->n_layers; i++)
            if ((mask >> i) & 1u) {
                if (!has_params(m->L[i].kind)) {
                    MSG("layer %d (%s) has no parameters to train", i, KIND_NAME[m->L[i].kind]);
                    return E_BAD_PARAM;
                }
                r |= 1ull << i;
            }
        break;
    default:
        MSG("training mode %u is not 0 full, 1 tl, 2 last or 3 mask", mode);
        return E_BAD_PARAM;
    }
    if (!r) {
        MSG("the trainable set is empty (no layer with parameters)");
        return E_BAD_PARAM;
    }
    *out = r;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Lowering: a BatchNorm directly after a conv is folded into it, unless the BN is trained while its
 * conv is frozen (device/engine/graph.lower, bn='fold'). */
void plan_lower(plan_t *p, const model_t *m, uint64_t tr) {
    memset(p, 0, sizeof *p);
    p->trainable = tr;
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const mlayer_t *L = &m->L[i];
        int trained = (int)((tr >> i) & 1u);
        if (L->kind == K_BATCHNORM && n > 0) {
            rlayer_t *prev = &p->R[n - 1];
            if (prev->kind == RK_CONV && prev->bn_src == 0xFF && prev->src == i - 1 && !(trained && !prev->trainable)) {
                prev->bn_src = (uint8_t)i;
                prev->use_bias = 1;
                prev->eps = L->param;
                continue;
            }
        }
        rlayer_t *R = &p->R[n];
        memset(R, 0, sizeof *R);
        R->src = (uint8_t)i;
        R->bn_src = 0xFF;
        R->trainable = (uint8_t)trained;
        R->L = L->in_l, R->W = L->in_w, R->C = L->in_c;
        R->Lo = L->out_l, R->F = L->out_c;
        R->in_n = L->in_n, R->out_n = L->out_n;
        switch (L->kind) {
        case K_CONV1D:
        case K_CONV2D:
            R->kind = RK_CONV, R->K = L->kernel, R->use_bias = L->use_bias;
            break;
        case K_DENSE:
            R->kind = RK_DENSE, R->C = (uint16_t)L->in_n, R->F = L->units, R->use_bias = L->use_bias;
            break;
        case K_RELU:
            R->kind = RK_RELU, R->in_place = 1;
            break;
        case K_SOFTMAX:
            R->kind = RK_SOFTMAX;
            break;
        case K_AVGPOOL1D:
        case K_AVGPOOL2D:
            R->kind = RK_AVGPOOL, R->pool = L->pool, R->stride = L->stride ? L->stride : L->pool;
            break;
        case K_MAXPOOL1D:
        case K_MAXPOOL2D:
            R->kind = RK_MAXPOOL, R->pool = L->pool, R->stride = L->stride ? L->stride : L->pool;
            break;
        case K_GAP1D:
        case K_GAP2D:
            R->kind = RK_GAP, R->F = L->in_c; /* channels (the output is flat) */
            break;
        case K_GMP1D:
        case K_GMP2D:
            R->kind = RK_GMP, R->F = L->in_c;
            break;
        case K_BATCHNORM:
            /* a trained BatchNorm needs its input for dgamma: it gets its own output buffer */
            R->kind = RK_BN, R->eps = L->param, R->in_place = (uint8_t)!trained;
            R->C = L->in_rank == 1 ? (uint16_t)L->in_n : L->in_c;
            break;
        default: /* flatten, dropout */
            R->kind = RK_VIEW, R->in_place = 1;
            break;
        }
        n++;
    }
    p->n = (uint8_t)n;
    /* a ReLU right after a conv or dense is applied by that layer when it writes its output (one pass
     * less); its backward still uses the output as the mask */
    for (int i = 0; i + 1 < n; i++)
        if ((p->R[i].kind == RK_CONV || p->R[i].kind == RK_DENSE) && p->R[i + 1].kind == RK_RELU) {
            p->R[i].relu_after = 1;
            p->R[i + 1].fused = 1;
        }
    p->first = (uint8_t)n;
    for (int i = 0; i < n; i++)
        if (p->R[i].trainable) {
            p->first = (uint8_t)i;
            break;
        }
    /* a frozen conv (+ its ReLU) read only by a frozen pooling computes only the rows the pooling reads:
     * 'valid' pooling drops the last rows when (Lo - pool) is not a multiple of the stride */
    for (int i = 0; i < n; i++) {
        rlayer_t *R = &p->R[i];
        R->Lu = R->Lo;
        int j = i + 1;
        if (j < n && p->R[j].kind == RK_RELU && p->R[j].fused) j++;
        if (R->kind == RK_CONV && j < p->first && (p->R[j].kind == RK_AVGPOOL || p->R[j].kind == RK_MAXPOOL))
            R->Lu = (uint16_t)((p->R[j].Lo - 1) * p->R[j].stride + p->R[j].pool);
    }
    for (int i = 0; i < n; i++) p->R[i].needs_dx = (uint8_t)(i > p->first);
    /* a dense head behind frozen layers (TL, last): grouped over ODL_HEAD_GROUP windows */
    p->group = 1;
    p->lastw = 0xFF;
    if (p->first < n && p->R[p->first].kind == RK_DENSE) {
        int lastw = -1, ok = 1;
        for (int i = 0; i < p->first; i++)
            if (!p->R[i].in_place) lastw = i;
        for (int i = p->first; i < n; i++) {
            uint8_t k = p->R[i].kind;
            if (!(k == RK_DENSE || k == RK_RELU || k == RK_VIEW || k == RK_SOFTMAX)) ok = 0;
        }
        if (ok && lastw >= 0) {
            p->group = ODL_HEAD_GROUP;
            p->lastw = (uint8_t)lastw;
        }
    }
    const uint32_t G = p->group;
    /* ---- sizes (floats) ---- */
    uint32_t f = m->in_n; /* x0 */
    uint32_t pp = 0;      /* forward ping-pong size */
    uint32_t e = 0;       /* error buffer size */
    for (int i = 0; i < n; i++) {
        rlayer_t *R = &p->R[i];
        if (R->kind == RK_CONV && R->bn_src != 0xFF) f += (uint32_t)R->K * R->C * R->F + R->F; /* folded W, b */
        if (R->kind == RK_BN) f += 2u * R->C;                                                 /* s, t */
        if (R->trainable) {
            uint32_t g = 0;
            if (R->kind == RK_CONV) g = (uint32_t)R->K * R->C * R->F + (R->use_bias ? R->F : 0);
            if (R->kind == RK_DENSE) g = (uint32_t)R->C * R->F + (R->use_bias ? R->F : 0);
            if (R->kind == RK_BN) g = 2u * R->C;
            f += g;
            p->n_trained += g;
        }
        if (!R->in_place) {
            if (i == p->lastw) f += G * R->out_n; /* the grouped head's input: one slot per window */
            else if (i < p->first) pp = R->out_n > pp ? R->out_n : pp;
            else f += G * R->out_n;
        }
        if (i >= p->first && n > p->first) {
            if (R->out_n > e) e = R->out_n;
            if (R->needs_dx && R->in_n > e) e = R->in_n;
        }
    }
    /* two ping-pong buffers only if more than one forward-only layer writes an output */
    int writers = 0;
    for (int i = 0; i < p->first && i < n; i++)
        if (!p->R[i].in_place && i != p->lastw) writers++;
    f += (writers > 1 ? 2u : (writers ? 1u : 0u)) * pp;
    p->e_len = p->first < n ? e : 0;
    f += 2u * G * p->e_len;
    /* each buffer rounded to 8 bytes in bind() */
    p->bytes = 4u * f + 8u * (uint32_t)(2 * n + 8);
}

static float *carve(uint8_t **cur, uint32_t nfloats) {
    float *r = (float *)(void *)*cur;
    uint32_t bytes = (4u * nfloats + 7u) & ~7u;
    *cur += bytes;
    return r;
}

/* Fold a BN into the conv before it: W_f = W*s, b_f = (b - mean)*s + beta, computed in double like the
 * engine's fold_conv_bn (float64) and rounded to float. */
static void fold(rlayer_t *R, const model_t *m, float *wts, float *wf, float *bf) {
    const mlayer_t *CL = &m->L[R->src], *BL = &m->L[R->bn_src];
    const float *W = wts + CL->woff[0];
    const float *b = CL->use_bias ? wts + CL->woff[1] : NULL;
    const float *gamma = wts + BL->woff[0], *beta = wts + BL->woff[1], *mean = wts + BL->woff[2],
                *var = wts + BL->woff[3];
    uint32_t F = R->F, KC = (uint32_t)R->K * R->C;
    for (uint32_t f = 0; f < F; f++) {
        double s = (double)gamma[f] / sqrt((double)var[f] + (double)BL->param);
        double bb = b ? (double)b[f] : 0.0;
        bf[f] = (float)((bb - (double)mean[f]) * s + (double)beta[f]);
        for (uint32_t k = 0; k < KC; k++) wf[k * F + f] = (float)((double)W[k * F + f] * s);
    }
}

void plan_bind(plan_t *p, const model_t *m, float *wts, uint8_t *region) {
    uint8_t *cur = region;
    p->x0 = carve(&cur, m->in_n);
    int writers = 0;
    uint32_t pp = 0;
    const uint32_t G = p->group;
    for (int i = 0; i < p->first && i < p->n; i++)
        if (!p->R[i].in_place && i != p->lastw) {
            writers++;
            if (p->R[i].out_n > pp) pp = p->R[i].out_n;
        }
    float *pa = writers ? carve(&cur, pp) : NULL;
    float *pb = writers > 1 ? carve(&cur, pp) : NULL;
    int flip = 0;
    float *prev = p->x0;
    uint32_t prev_gs = 0;
    for (int i = 0; i < p->n; i++) {
        rlayer_t *R = &p->R[i];
        const mlayer_t *L = &m->L[R->src];
        R->in = prev;
        R->in_gs = prev_gs;
        R->out_gs = 0;
        if (R->in_place) {
            R->out = prev;
            R->out_gs = prev_gs;
        } else if (i < p->first && i != p->lastw) {
            R->out = flip ? pb : pa;
            flip ^= 1;
        } else {
            R->out = carve(&cur, G * R->out_n);
            if (G > 1) R->out_gs = R->out_n;
        }
        prev = R->out;
        prev_gs = R->out_gs;
        switch (R->kind) {
        case RK_CONV:
            if (R->bn_src != 0xFF) {
                uint32_t kcf = (uint32_t)R->K * R->C * R->F;
                R->w = carve(&cur, kcf);
                R->b = carve(&cur, R->F);
                fold(R, m, wts, R->w, R->b);
            } else {
                R->w = wts + L->woff[0];
                R->b = L->use_bias ? wts + L->woff[1] : NULL;
            }
            if (R->trainable) {
                R->gw = carve(&cur, (uint32_t)R->K * R->C * R->F);
                R->gb = R->use_bias ? carve(&cur, R->F) : NULL;
            }
            break;
        case RK_DENSE:
            R->w = wts + L->woff[0];
            R->b = L->use_bias ? wts + L->woff[1] : NULL;
            if (R->trainable) {
                R->gw = carve(&cur, (uint32_t)R->C * R->F);
                R->gb = R->use_bias ? carve(&cur, R->F) : NULL;
            }
            break;
        case RK_BN: {
            R->w = wts + L->woff[0]; /* gamma */
            R->b = wts + L->woff[1]; /* beta */
            R->mean = wts + L->woff[2];
            R->var = wts + L->woff[3];
            R->s = carve(&cur, R->C);
            R->t = carve(&cur, R->C);
            if (R->trainable) {
                R->gw = carve(&cur, R->C);
                R->gb = carve(&cur, R->C);
            }
            break;
        }
        default:
            break;
        }
    }
    if (p->e_len) {
        p->e0 = carve(&cur, G * p->e_len);
        p->e1 = carve(&cur, G * p->e_len);
    }
    p->gcount = 0;
    plan_zero_grads(p);
}

void plan_zero_grads(plan_t *p) {
    for (int i = 0; i < p->n; i++) {
        rlayer_t *R = &p->R[i];
        if (!R->trainable) continue;
        uint32_t nw = R->kind == RK_BN ? R->C : (uint32_t)(R->kind == RK_CONV ? R->K : 1) * R->C * R->F;
        uint32_t nb = R->kind == RK_BN ? R->C : (R->gb ? R->F : 0);
        memset(R->gw, 0, 4u * nw);
        if (R->gb) memset(R->gb, 0, 4u * nb);
    }
}

/* Inverse of fold keeping the BN statistics (device/engine/weights.unfold_conv_bn). */
void plan_export(const plan_t *p, const model_t *m, float *wts) {
    for (int i = 0; i < p->n; i++) {
        const rlayer_t *R = &p->R[i];
        if (R->kind != RK_CONV || R->bn_src == 0xFF || !R->trainable) continue;
        const mlayer_t *CL = &m->L[R->src], *BL = &m->L[R->bn_src];
        float *W = wts + CL->woff[0];
        float *b = CL->use_bias ? wts + CL->woff[1] : NULL;
        float *gamma = wts + BL->woff[0], *beta = wts + BL->woff[1], *mean = wts + BL->woff[2],
              *var = wts + BL->woff[3];
        double eps = BL->param;
        uint32_t F = R->F, KC = (uint32_t)R->K * R->C;
        for (uint32_t f = 0; f < F; f++) {
            double g = gamma[f], mu = mean[f], v = var[f];
            double s = g / sqrt(v + eps);
            if (fabs(s) < 1e-12) {
                g = 1.0, mu = 0.0, v = 1.0 - eps;
                s = g / sqrt(v + eps);
            }
            for (uint32_t k = 0; k < KC; k++) W[k * F + f] = (float)((double)R->w[k * F + f] / s);
            if (b) {
                b[f] = (float)(((double)R->b[f] - (double)beta[f]) / s + mu);
            } else {
                beta[f] = (float)((double)R->b[f] + s * mu);
            }
            gamma[f] = (float)g;
            mean[f] = (float)mu;
            var[f] = (float)v;
        }
    }
}

/* Per-sample counts exactly as device/engine/ops.py counts them (docs/engine.md, "Operation counting"). */
void plan_ops(const plan_t *p, int training, ops_t *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < p->n; i++) {
        const rlayer_t *R = &p->R[i];
        uint64_t nout = R->out_n, nin = R->in_n;
        int bwd = training && i >= p->first;
        switch (R->kind) {
        case RK_CONV: {
            uint64_t macs = (uint64_t)R->Lo * R->W * R->F * R->C * R->K;
            o->conv_fwd += macs;
            if (R->use_bias) o->elementwise += nout;
            if (bwd && R->trainable) {
                o->conv_dw += macs;
                if (R->use_bias) o->elementwise += nout;
            }
            if (bwd && R->needs_dx) o->conv_dx += (uint64_t)R->L * R->W * R->C * R->F * R->K;
            break;
        }
        case RK_DENSE: {
            uint64_t macs = (uint64_t)R->C * R->F;
            o->dense_fwd += macs;
            if (R->use_bias) o->elementwise += R->F;
            if (bwd && R->trainable) {
                o->dense_dw += macs;
                if (R->use_bias) o->elementwise += R->F;
            }
            if (bwd && R->needs_dx) o->dense_dx += macs;
            break;
        }
        case RK_RELU:
        case RK_SOFTMAX:
            o->elementwise += nout;
            if (bwd) o->elementwise += nout;
            break;
        case RK_AVGPOOL:
        case RK_MAXPOOL:
            o->elementwise += (uint64_t)R->pool * nout;
            if (bwd && R->needs_dx) o->elementwise += (uint64_t)R->pool * nout;
            break;
        case RK_GAP:
        case RK_GMP:
            o->elementwise += nin;
            if (bwd && R->needs_dx) o->elementwise += nin;
            break;
        case RK_BN:
            o->elementwise += nin;
            if (bwd && R->trainable) o->elementwise += 2 * nin;
            if (bwd && R->needs_dx) o->elementwise += nin;
            break;
        default:
            break;
        }
    }
}
