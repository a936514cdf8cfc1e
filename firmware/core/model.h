/*
 * The model: architecture descriptor (docs/protocol.md §5.1), shapes, weights in Keras layout, and the
 * runtime graph + memory plan of one training phase or of inference (docs/firmware.md, "Memory plan").
 */
#ifndef ODL_MODEL_H
#define ODL_MODEL_H

#include "odl.h"

#define ODL_MAX_LAYERS 24

/* descriptor kind codes */
enum {
    K_CONV1D = 1, K_CONV2D, K_DENSE, K_RELU, K_SOFTMAX, K_AVGPOOL1D, K_MAXPOOL1D, K_AVGPOOL2D, K_MAXPOOL2D,
    K_GAP1D, K_GMP1D, K_GAP2D, K_GMP2D, K_FLATTEN, K_BATCHNORM, K_DROPOUT, K_LAST = K_DROPOUT
};

typedef struct {
    uint8_t kind, use_bias;
    uint16_t filters, kernel, units, pool, stride;
    float param; /* BatchNorm epsilon / dropout rate */
    uint8_t in_rank, out_rank;
    uint16_t in_l, in_w, in_c;   /* canonical spatial (L, W, C); flat inputs: (N, 1, 1) with rank 1 */
    uint16_t out_l, out_w, out_c;
    uint32_t in_n, out_n;        /* elements per sample */
    uint8_t n_tensors;
    uint32_t woff[4], wlen[4];   /* float offsets/lengths of the Keras tensors in the weights region */
    char name[17];
} mlayer_t;

typedef struct {
    uint8_t loaded;
    uint8_t n_layers, rank, prep, n_classes;
    uint16_t in[3];
    uint32_t in_n;           /* elements of one input window */
    uint32_t desc_len, blob_len, params, crc;
    uint32_t infer_mem;      /* MODEL_INFO.infer_mem: params + input + every layer output, x4 (paper accounting) */
    mlayer_t L[ODL_MAX_LAYERS];
} model_t;

/* Parse a descriptor of `len` bytes for a blob carrying `weight_bytes` of weights.  On error returns an
 * ERROR code (E_...) with arg0, arg1 and a message in msg (cap bytes). */
int model_parse(model_t *m, const uint8_t *desc, uint32_t len, uint32_t weight_bytes, uint32_t *arg0,
                uint32_t *arg1, char *msg, size_t cap);

/* Trainable set as a bitmask over descriptor layers (bit i = layer i): the protocol's modes. */
enum { MODE_FULL = 0, MODE_TL = 1, MODE_LAST = 2, MODE_MASK = 3 };
/* Returns 0 and the mask, or E_BAD_PARAM with a message. */
int model_trainable(const model_t *m, uint8_t mode, uint64_t layer_mask, uint64_t *out, char *msg, size_t cap);

/* ---------------- runtime graph ---------------- */
enum { RK_CONV, RK_DENSE, RK_RELU, RK_SOFTMAX, RK_AVGPOOL, RK_MAXPOOL, RK_GAP, RK_GMP, RK_BN, RK_VIEW };

typedef struct {
    uint8_t kind, src, bn_src; /* bn_src: folded BatchNorm's descriptor index, 0xFF none */
    uint8_t trainable, use_bias, needs_dx, in_place;
    uint8_t relu_after; /* conv/dense: the next layer is a ReLU applied here, as the output is stored */
    uint8_t fused;      /* relu: already applied by the layer before it */
    uint16_t L, W, C;          /* input (L, W, C); dense: C = N inputs */
    uint16_t Lo, F, K, pool, stride; /* output length / channels (dense: F = units) */
    uint16_t Lu;               /* conv: output rows computed (< Lo when a frozen valid pooling drops the last) */
    uint32_t in_n, out_n;
    float eps;
    /* bound per plan (pointers into the model blob or the plan region) */
    float *w, *b;              /* runtime kernel (K*C, F) / (N, U) and bias; BN: gamma, beta */
    float *gw, *gb;            /* gradient accumulators (trainable) */
    float *mean, *var;         /* BN statistics (a BatchNorm not folded into its conv) */
    float *s, *t;              /* affine BN scale / shift */
    float *in, *out;           /* activation buffers (a grouped head: slot 0 of the group) */
    uint32_t in_gs, out_gs;    /* grouped head: floats between two windows' slots of in / out */
} rlayer_t;

/* Windows the dense head of a TL-like round runs at once (plan_t.group; docs/firmware.md, "Memory plan") */
#define ODL_HEAD_GROUP 4

typedef struct {
    uint8_t n;                 /* runtime layers */
    uint8_t first;             /* first trainable runtime layer (n if none) */
    uint64_t trainable;        /* descriptor mask */
    rlayer_t R[ODL_MAX_LAYERS];
    float *x0;                 /* input window */
    float *e0, *e1;            /* error ping-pong buffers */
    uint32_t e_len;
    uint32_t bytes;            /* plan size */
    uint32_t n_trained;        /* trained parameters */
    /* grouped head: when every layer from `first` on is Dense, ReLU, a view or the softmax (and a frozen layer
     * writes the head's input), the frozen layers run per window and the head over `group` windows at once;
     * the head's buffers and the error buffers hold one slot per window.  group = 1: per window. */
    uint8_t group;
    uint8_t lastw;             /* the last frozen layer that writes an output (the head's input), grouped */
    uint8_t gcount;            /* windows waiting in the group */
    int16_t glabel[ODL_HEAD_GROUP];
} plan_t;

/* Lower the model for a trainable mask (0 = inference) and size the plan (no pointers bound). */
void plan_lower(plan_t *p, const model_t *m, uint64_t trainable);
/* Bind the plan's buffers in `region` (>= p->bytes, 8-aligned) and the weights at `weights`;
 * computes folded conv parameters and affine BN scale/shift from the canonical weights. */
void plan_bind(plan_t *p, const model_t *m, float *weights, uint8_t *region);
/* Write trained folded convs back into the canonical weights (unfold), as device/engine does. */
void plan_export(const plan_t *p, const model_t *m, float *weights);
/* Zero the gradient accumulators. */
void plan_zero_grads(plan_t *p);

/* Per-sample operation counts (same keys as estimator.arch.OP_TYPES) of a plan. */
typedef struct {
    uint64_t conv_fwd, conv_dw, conv_dx, dense_fwd, dense_dw, dense_dx, elementwise;
} ops_t;
void plan_ops(const plan_t *p, int training, ops_t *o);

#endif
