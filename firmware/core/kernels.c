/*
 * Per-sample kernels.  The convolution and dense kernels are register-blocked (4 x 4 accumulators for the
 * convolutions, 8 for dense) so each loaded value feeds several multiply-adds: on the Cortex-M4F a VLDR
 * costs 2 cycles and a VMUL + VADD pair 2, so the blocking (not the arithmetic) decides cycles per MAC
 * (docs/firmware.md, "Kernels").  Built with -ffp-contract=off: separate VMUL/VADD (1 + 1 cycles) instead
 * of a fused VFMA (3 cycles), and the same two roundings as the float32 reference.
 */
#include "kernels.h"

#include <math.h>
#include <stddef.h>

/* ------------------------------------------------------------------------------------------------ */
/* Kernels: assembly on the Cortex-M4F (kernels_m4.S), C twins elsewhere (same sums, same order)     */
/* ------------------------------------------------------------------------------------------------ */
typedef struct {
    const float *a, *w, *b; /* operands; b: bias or NULL */
    float *y;               /* result */
    uint32_t n;             /* inner length */
    uint32_t as, ws, ys;    /* row strides in bytes */
    uint32_t nb;            /* output blocks */
    uint32_t relu;          /* ReLU on store */
    uint32_t ts;            /* conv: tap stride of w; row sums: input advance per output row (bytes) */
    int32_t k0, k1;         /* conv dX: tap range; row sums: k0 = rows summed */
    float scale;            /* row sums, SGD */
    float lr;               /* SGD */
} mk_args_t;
#if defined(ODL_M4_ASM)
_Static_assert(offsetof(mk_args_t, scale) == 52, "mk_args_t offsets are hard-coded in kernels_m4.S");
#endif

#define AT(p, off) (*(const float *)(const void *)((const char *)(p) + (off)))
#define YAT(p, off) (*(float *)(void *)((char *)(p) + (off)))

/* ReLU as the assembly applies it: a set sign bit gives +0 */
static inline float relu_bits(float v) {
    union {
        float f;
        uint32_t u;
    } c = {v};
    if (c.u >> 31) c.u = 0;
    return c.f;
}

#if defined(ODL_M4_ASM)
#define MK(name) void name(const mk_args_t *g);
MK(odl_mk_conv3_r1) MK(odl_mk_conv3_r2) MK(odl_mk_conv3_r3) MK(odl_mk_conv3_r4)
MK(odl_mk_outer_r1) MK(odl_mk_outer_r2) MK(odl_mk_outer_r3) MK(odl_mk_outer_r4)
MK(odl_mk_dot_p1) MK(odl_mk_dot_p2) MK(odl_mk_dot_p3) MK(odl_mk_dotd_p1)
MK(odl_mk_gemv_u12) MK(odl_mk_gemv_u4) MK(odl_mk_gemv_u2) MK(odl_mk_gemv_u1)
MK(odl_mk_gerv_u12) MK(odl_mk_gerv_u4) MK(odl_mk_gerv_u2) MK(odl_mk_gerv_u1)
MK(odl_mk_rowsum) MK(odl_mk_biasgrad) MK(odl_mk_rowspread) MK(odl_mk_sgd) MK(odl_mk_relu_mask)
MK(odl_mk_gemm4_u1) MK(odl_mk_gemm4_u2) MK(odl_mk_gemm4_u3) MK(odl_mk_gemm4_u4) MK(odl_mk_gemm4_u5)
MK(odl_mk_ger4_u1) MK(odl_mk_ger4_u2) MK(odl_mk_ger4_u3) MK(odl_mk_ger4_u4) MK(odl_mk_ger4_u5)
#undef MK
static void (*const mk_gemm4[5])(const mk_args_t *) = {odl_mk_gemm4_u1, odl_mk_gemm4_u2, odl_mk_gemm4_u3,
                                                        odl_mk_gemm4_u4, odl_mk_gemm4_u5};
static void (*const mk_ger4[5])(const mk_args_t *) = {odl_mk_ger4_u1, odl_mk_ger4_u2, odl_mk_ger4_u3,
                                                       odl_mk_ger4_u4, odl_mk_ger4_u5};
#define GEMM4(U, g) mk_gemm4[(U) - 1](g)
#define GER4(U, g) mk_ger4[(U) - 1](g)
static void (*const mk_conv3[4])(const mk_args_t *) = {odl_mk_conv3_r1, odl_mk_conv3_r2, odl_mk_conv3_r3,
                                                        odl_mk_conv3_r4};
static void (*const mk_outer[4])(const mk_args_t *) = {odl_mk_outer_r1, odl_mk_outer_r2, odl_mk_outer_r3,
                                                        odl_mk_outer_r4};
static void (*const mk_dot[3])(const mk_args_t *) = {odl_mk_dot_p1, odl_mk_dot_p2, odl_mk_dot_p3};
#define CONV3(R, g) mk_conv3[(R) - 1](g)
#define OUTER(R, g) mk_outer[(R) - 1](g)
#define DOT(P, g) mk_dot[(P) - 1](g)
#define GEMV(U, g) ((U) == 12 ? odl_mk_gemv_u12 : (U) == 4 ? odl_mk_gemv_u4 : (U) == 2 ? odl_mk_gemv_u2 : odl_mk_gemv_u1)(g)
#define GERV(U, g) ((U) == 12 ? odl_mk_gerv_u12 : (U) == 4 ? odl_mk_gerv_u4 : (U) == 2 ? odl_mk_gerv_u2 : odl_mk_gerv_u1)(g)
#define ROWSUM(g) odl_mk_rowsum(g)
#define BIASGRAD(g) odl_mk_biasgrad(g)
#define DOTD(g) odl_mk_dotd_p1(g)
#define ROWSPREAD(g) odl_mk_rowspread(g)
#define SGD(g) odl_mk_sgd(g)
#define RELU_MASK(g) odl_mk_relu_mask(g)
#else
static void c_conv3(int R, const mk_args_t *g) {
    for (uint32_t fb = 0; fb < g->nb; fb++) {
        float acc[4][4];
        for (int i = 0; i < R; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = g->b ? g->b[4 * fb + j] : 0.0f;
        for (uint32_t c = 0; c < g->n; c++)
            for (uint32_t k = 0; k < 3; k++)
                for (int i = 0; i < R; i++) {
                    float xv = AT(g->a, (uint32_t)(i + (int)k) * g->as + 4u * c);
                    for (int j = 0; j < 4; j++) acc[i][j] += xv * AT(g->w, k * g->ts + c * g->ws + 16u * fb + 4u * j);
                }
        for (int i = 0; i < R; i++)
            for (int j = 0; j < 4; j++) {
                float v = acc[i][j];
                YAT(g->y, (uint32_t)i * g->ys + 16u * fb + 4u * j) = g->relu ? relu_bits(v) : v;
            }
    }
}
static void c_outer(int R, const mk_args_t *g) {
    for (uint32_t fb = 0; fb < g->nb; fb++) {
        float acc[4][4];
        for (uint32_t m = 0; m < g->n; m++)
            for (int i = 0; i < R; i++) {
                float av = AT(g->a, m * g->as + 4u * i);
                for (int j = 0; j < 4; j++) {
                    float p = av * AT(g->w, m * g->ws + 16u * fb + 4u * j);
                    acc[i][j] = m ? acc[i][j] + p : p;
                }
            }
        for (int i = 0; i < R; i++)
            for (int j = 0; j < 4; j++) YAT(g->y, (uint32_t)i * g->ys + 16u * fb + 4u * j) += acc[i][j];
    }
}
static void c_dot(int P, const mk_args_t *g) {
    for (uint32_t cb = 0; cb < g->nb; cb++) {
        float acc[3][4] = {{0}};
        for (int32_t k = g->k0; k <= g->k1; k++)
            for (uint32_t f = 0; f < g->n; f++)
                for (int i = 0; i < P; i++) {
                    float av = AT(g->a, (int32_t)((i - k + g->k0) * (int32_t)g->as) + (int32_t)(4u * f));
                    for (int j = 0; j < 4; j++)
                        acc[i][j] += av * AT(g->w, (uint32_t)k * g->ts + (4u * cb + (uint32_t)j) * g->ws + 4u * f);
                }
        for (int i = 0; i < P; i++)
            for (int j = 0; j < 4; j++) YAT(g->y, (uint32_t)i * g->ys + 16u * cb + 4u * j) = acc[i][j];
    }
}
static void c_gemv(int U, const mk_args_t *g) {
    float acc[12] = {0};
    for (uint32_t q = 0; q < g->n; q++)
        for (int u = 0; u < U; u++) acc[u] += g->a[q] * AT(g->w, q * g->ws + 4u * u);
    for (int u = 0; u < U; u++) {
        float v = g->b ? acc[u] + g->b[u] : acc[u];
        g->y[u] = g->relu ? relu_bits(v) : v;
    }
}
static void c_gerv(int U, const mk_args_t *g) {
    for (uint32_t q = 0; q < g->n; q++)
        for (int u = 0; u < U; u++) YAT(g->y, q * g->ys + 4u * u) += g->a[q] * g->w[u];
}
static void c_rowsum(const mk_args_t *g) {
    for (uint32_t r = 0; r < g->nb; r++)
        for (uint32_t j = 0; j < g->n; j++) {
            float a = AT(g->a, r * g->ts + 4u * j);
            for (int32_t t = 1; t < g->k0; t++) a += AT(g->a, r * g->ts + (uint32_t)t * g->as + 4u * j);
            a = a * g->scale;
            YAT(g->y, r * g->ys + 4u * j) = g->relu ? YAT(g->y, r * g->ys + 4u * j) + a : a;
        }
}
static void c_rowspread(const mk_args_t *g) {
    for (uint32_t r = 0; r < g->nb; r++)
        for (uint32_t j = 0; j < g->n; j++) {
            float t = AT(g->a, r * g->as + 4u * j) * g->scale;
            for (int32_t q = 0; q < g->k0; q++) YAT(g->y, r * g->ts + (uint32_t)q * g->ys + 4u * j) = t;
        }
}
static void c_relu_mask(const mk_args_t *g) {
    const uint32_t *y = (const uint32_t *)(const void *)g->a;
    uint32_t *d = (uint32_t *)(void *)g->y;
    for (uint32_t i = 0; i < g->n; i++)
        if (y[i] - 1u >= 0x7F800000u) d[i] = 0u;
}
static void c_sgd(const mk_args_t *g) {
    float *w = g->y;
    float *acc = (float *)(void *)g->a; /* zeroed for the next batch */
    for (uint32_t i = 0; i < g->n; i++) {
        float t = acc[i] * g->scale;
        t = t * g->lr;
        w[i] = w[i] - t;
        acc[i] = 0.0f;
    }
}
/* the grouped head: 4 windows at slots a + s as, w + s ws (ger), y + s ys (gemm); nb blocks of U units */
static void c_gemm4(int U, const mk_args_t *g) {
    for (uint32_t blk = 0; blk < g->nb; blk++) {
        const uint32_t off = 4u * (uint32_t)U * blk;
        float acc[4][5] = {{0}};
        for (uint32_t q = 0; q < g->n; q++)
            for (uint32_t s = 0; s < 4; s++) {
                float xv = AT(g->a, s * g->as + 4u * q);
                for (int u = 0; u < U; u++) acc[s][u] += xv * AT(g->w, q * g->ws + off + 4u * (uint32_t)u);
            }
        for (uint32_t s = 0; s < 4; s++)
            for (int u = 0; u < U; u++) {
                float v = g->b ? acc[s][u] + AT(g->b, off + 4u * (uint32_t)u) : acc[s][u];
                YAT(g->y, s * g->ys + off + 4u * (uint32_t)u) = g->relu ? relu_bits(v) : v;
            }
    }
}
static void c_ger4(int U, const mk_args_t *g) {
    for (uint32_t blk = 0; blk < g->nb; blk++) {
        const uint32_t off = 4u * (uint32_t)U * blk;
        for (uint32_t q = 0; q < g->n; q++)
            for (uint32_t s = 0; s < 4; s++) {
                float xv = AT(g->a, s * g->as + 4u * q);
                for (int u = 0; u < U; u++)
                    YAT(g->y, q * g->ys + off + 4u * (uint32_t)u) += xv * AT(g->w, s * g->ws + off + 4u * (uint32_t)u);
            }
    }
}
#define GEMM4(U, g) c_gemm4(U, g)
#define GER4(U, g) c_ger4(U, g)
#define CONV3(R, g) c_conv3(R, g)
#define OUTER(R, g) c_outer(R, g)
#define DOT(P, g) c_dot(P, g)
#define GEMV(U, g) c_gemv(U, g)
#define GERV(U, g) c_gerv(U, g)
#define ROWSUM(g) c_rowsum(g)
#define BIASGRAD(g) c_rowsum(g)
#define DOTD(g) c_dot(1, g)
#define ROWSPREAD(g) c_rowspread(g)
#define SGD(g) c_sgd(g)
#define RELU_MASK(g) c_relu_mask(g)
#endif

static inline float relu_if(float v, int relu) { return relu ? relu_bits(v) : v; }

/* ------------------------------------------------------------------------------------------------ */
/* Conv (K x 1 along time, 'valid', stride 1), per axis column w.                                  */
/* ------------------------------------------------------------------------------------------------ */

/* one output of the conv, generic (shapes the kernels do not cover) */
static float conv_one(const rlayer_t *R, int m, int w, int f, float a) {
    const int W = R->W, C = R->C, K = R->K, F = R->F;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < K; k++) a += R->in[((m + k) * W + w) * C + c] * R->w[(k * C + c) * F + f];
    return a;
}

void k_conv_fwd(const rlayer_t *R) {
    const int W = R->W, C = R->C, K = R->K, F = R->F, Lo = R->Lu; /* the rows anything reads */
    const float *b = R->b;
    const int relu = R->relu_after;
    if (K == 3 && (F & 3) == 0) {
        mk_args_t g = {0};
        g.w = R->w;
        g.b = b;
        g.n = (uint32_t)C;
        g.as = 4u * (uint32_t)(W * C);
        g.ws = 4u * (uint32_t)F;
        g.ys = 4u * (uint32_t)(W * F);
        g.ts = 4u * (uint32_t)(C * F);
        g.nb = (uint32_t)F / 4u;
        g.relu = (uint32_t)relu;
        for (int w = 0; w < W; w++)
            for (int m = 0; m < Lo; m += 4) {
                int rows = Lo - m < 4 ? Lo - m : 4;
                g.a = R->in + (m * W + w) * C;
                g.y = R->out + (m * W + w) * F;
                CONV3(rows, &g);
            }
        return;
    }
    for (int m = 0; m < Lo; m++)
        for (int w = 0; w < W; w++)
            for (int f = 0; f < F; f++) {
                float v = conv_one(R, m, w, f, b ? b[f] : 0.0f);
                R->out[(m * W + w) * F + f] = relu_if(v, relu);
            }
}

/* dW: gw[(k C + c) F + f] += sum over (w, m) of x[(m + k) W + w][c] * dy[m W + w][f];  gb[f] += sum dy. */
__attribute__((noinline)) static void conv_dw(const rlayer_t *R, const float *dy) {
    const int W = R->W, C = R->C, K = R->K, F = R->F, Lo = R->Lo;
    float *gw = R->gw;
    if (W == 1 && (F & 3) == 0) {
        /* im2col is a view: column kc of row m is x[m C + kc] for kc < K C, 4 consecutive columns contiguous */
        const int KC = K * C;
        mk_args_t g = {0};
        g.w = dy;
        g.n = (uint32_t)Lo;
        g.as = 4u * (uint32_t)C;
        g.ws = 4u * (uint32_t)F;
        g.ys = 4u * (uint32_t)F;
        g.nb = (uint32_t)F / 4u;
        for (int kc = 0; kc < KC; kc += 4) {
            int rows = KC - kc < 4 ? KC - kc : 4;
            g.a = R->in + kc;
            g.y = gw + kc * F;
            OUTER(rows, &g);
        }
    } else {
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C; c++)
                for (int f = 0; f < F; f++) {
                    float a = 0;
                    for (int w = 0; w < W; w++)
                        for (int m = 0; m < Lo; m++) a += R->in[((m + k) * W + w) * C + c] * dy[(m * W + w) * F + f];
                    gw[(k * C + c) * F + f] += a;
                }
    }
    if (R->gb) { /* gb[f] += sum over the Lo W rows of dy */
        mk_args_t g = {0};
        g.a = dy;
        g.y = R->gb;
        g.n = (uint32_t)F;
        g.as = 4u * (uint32_t)F;
        g.nb = 1;
        g.k0 = Lo * W;
        g.scale = 1.0f;
        g.relu = 1; /* accumulate */
        BIASGRAD(&g);
    }
}

/* dX (the paper's eq. 5 without the zero products): dx[l W + w][c] = sum_k sum_f dy[(l-k) W + w][f] *
 * w[(k C + c) F + f] over 0 <= l - k < Lo.  Consecutive input rows whose valid taps are the same range
 * go through the kernel together (up to 3). */
__attribute__((noinline)) static void conv_dx(const rlayer_t *R, const float *dy, float *dx) {
    const int W = R->W, C = R->C, K = R->K, F = R->F, Lo = R->Lo, L = R->L;
    const int C4 = C & ~3;
    mk_args_t g = {0};
    g.n = (uint32_t)F;
    g.as = 4u * (uint32_t)(W * F);
    g.ws = 4u * (uint32_t)F;
    g.ys = 4u * (uint32_t)(W * C);
    g.ts = 4u * (uint32_t)(C * F);
    g.nb = (uint32_t)C4 / 4u;
    for (int w = 0; w < W; w++) {
        int l = 0;
        while (l < L) {
            const int kmin = l - (Lo - 1) > 0 ? l - (Lo - 1) : 0;
            const int kmax = l < K - 1 ? l : K - 1;
            int P = 1;
            while (P < 3 && l + P < L) {
                const int l2 = l + P;
                const int kmin2 = l2 - (Lo - 1) > 0 ? l2 - (Lo - 1) : 0;
                const int kmax2 = l2 < K - 1 ? l2 : K - 1;
                if (kmin2 != kmin || kmax2 != kmax) break;
                P++;
            }
            if (C4) {
                g.a = dy + ((l - kmin) * W + w) * F;
                g.w = R->w;
                g.y = dx + (l * W + w) * C;
                g.k0 = kmin;
                g.k1 = kmax;
                DOT(P, &g);
            }
            for (int c = C4; c < C; c++)
                for (int i = 0; i < P; i++) {
                    float a = 0;
                    for (int k = kmin; k <= kmax; k++)
                        for (int f = 0; f < F; f++)
                            a += dy[((l + i - k) * W + w) * F + f] * R->w[(k * C + c) * F + f];
                    dx[((l + i) * W + w) * C + c] = a;
                }
            l += P;
        }
    }
}

void k_conv_bwd(const rlayer_t *R, const float *dy, float *dx) {
    if (R->trainable) conv_dw(R, dy);
    if (R->needs_dx) conv_dx(R, dy, dx);
}

/* ------------------------------------------------------------------------------------------------ */
/* Dense                                                                                            */
/* ------------------------------------------------------------------------------------------------ */
/* units in blocks of 12, then 4, 2, 1 */
static int unit_block(int left) { return left >= 12 ? 12 : left >= 4 ? 4 : left >= 2 ? 2 : 1; }

void k_dense_fwd(const rlayer_t *R) {
    const int N = R->C, U = R->F;
    mk_args_t g = {0};
    g.a = R->in;
    g.n = (uint32_t)N;
    g.ws = 4u * (uint32_t)U;
    g.relu = (uint32_t)R->relu_after;
    for (int u = 0; u < U;) {
        int nu = unit_block(U - u);
        g.w = R->w + u;
        g.b = R->b ? R->b + u : 0;
        g.y = R->out + u;
        GEMV(nu, &g);
        u += nu;
    }
}

/* dW += x dy^T of one window (x at `x`) */
static void dense_dw1(const rlayer_t *R, const float *x, const float *dy) {
    const int N = R->C, U = R->F;
    mk_args_t g = {0};
    g.a = x;
    g.n = (uint32_t)N;
    g.ys = 4u * (uint32_t)U;
    for (int u = 0; u < U;) {
        int nu = unit_block(U - u);
        g.w = dy + u;
        g.y = R->gw + u;
        GERV(nu, &g);
        u += nu;
    }
}

static void dense_dx1(const rlayer_t *R, const float *dy, float *dx) {
    const int N = R->C, U = R->F;
    {
        const int N4 = N & ~3;
        if (N4) {
            mk_args_t g = {0};
            g.a = dy;
            g.w = R->w;
            g.y = dx;
            g.n = (uint32_t)U;
            g.ws = 4u * (uint32_t)U;
            g.nb = (uint32_t)N4 / 4u;
            DOTD(&g);
        }
        for (int n = N4; n < N; n++) {
            float a = 0;
            for (int u = 0; u < U; u++) a += dy[u] * R->w[n * U + u];
            dx[n] = a;
        }
    }
}

void k_dense_bwd(const rlayer_t *R, const float *dy, float *dx) {
    if (R->trainable) {
        dense_dw1(R, R->in, dy);
        if (R->gb)
            for (int u = 0; u < R->F; u++) R->gb[u] += dy[u];
    }
    if (R->needs_dx) dense_dx1(R, dy, dx);
}

/* The grouped head (model.h: plan_t.group): gn windows whose vectors are slots of R->in / R->out (strides
 * in_gs / out_gs floats) and of dy / dx (stride es).  Each output and each gradient element is computed with
 * the same operations in the same order as gn calls of k_dense_fwd / k_dense_bwd, one window after the other:
 * the same bits. */
#define UB 5 /* units per block of the 4-window kernels */
void k_dense_fwd_group(const rlayer_t *R, int gn) {
    if (gn != 4) {
        for (int s = 0; s < gn; s++) {
            rlayer_t S = *R;
            S.in = R->in + (uint32_t)s * R->in_gs;
            S.out = R->out + (uint32_t)s * R->out_gs;
            k_dense_fwd(&S);
        }
        return;
    }
    const int U = R->F;
    mk_args_t g = {0};
    g.a = R->in;
    g.as = 4u * R->in_gs;
    g.n = (uint32_t)R->C;
    g.ws = 4u * (uint32_t)U;
    g.ys = 4u * R->out_gs;
    g.relu = (uint32_t)R->relu_after;
    g.w = R->w;
    g.b = R->b;
    g.y = R->out;
    g.nb = (uint32_t)(U / UB);
    if (g.nb) GEMM4(UB, &g);
    const int u = U - U % UB;
    if (U % UB) {
        g.w = R->w + u;
        g.b = R->b ? R->b + u : 0;
        g.y = R->out + u;
        g.nb = 1;
        GEMM4(U % UB, &g);
    }
}

void k_dense_bwd_group(const rlayer_t *R, int gn, const float *dy, float *dx, uint32_t es) {
    const int U = R->F;
    if (R->trainable) {
        if (gn == 4) {
            mk_args_t g = {0};
            g.a = R->in;
            g.as = 4u * R->in_gs;
            g.n = (uint32_t)R->C;
            g.ws = 4u * es;
            g.ys = 4u * (uint32_t)U;
            g.w = dy;
            g.y = R->gw;
            g.nb = (uint32_t)(U / UB);
            if (g.nb) GER4(UB, &g);
            const int u = U - U % UB;
            if (U % UB) {
                g.w = dy + u;
                g.y = R->gw + u;
                g.nb = 1;
                GER4(U % UB, &g);
            }
        } else {
            for (int s = 0; s < gn; s++) dense_dw1(R, R->in + (uint32_t)s * R->in_gs, dy + (uint32_t)s * es);
        }
        if (R->gb)
            for (int s = 0; s < gn; s++)
                for (int u = 0; u < U; u++) R->gb[u] += dy[(uint32_t)s * es + (uint32_t)u];
    }
    if (R->needs_dx)
        for (int s = 0; s < gn; s++) dense_dx1(R, dy + (uint32_t)s * es, dx + (uint32_t)s * es);
}

/* ------------------------------------------------------------------------------------------------ */
/* Elementwise layers                                                                               */
/* ------------------------------------------------------------------------------------------------ */
void k_relu_fwd(const rlayer_t *R) {
    if (R->fused) return; /* applied by the conv / dense before it when it stored its output */
    float *y = R->out;
    const float *x = R->in;
    for (uint32_t i = 0; i < R->out_n; i++) y[i] = relu_bits(x[i]);
}

void k_relu_bwd(const rlayer_t *R, float *dy) {
    /* dy = 0 where not y > 0, on the bits: y > 0 exactly when bits - 1 < 0x7F800000 (positive, up to +inf) */
    mk_args_t g = {0};
    g.a = R->out;
    g.y = dy;
    g.n = R->out_n;
    RELU_MASK(&g);
}

void k_pool_fwd(const rlayer_t *R) {
    const int W = R->W, C = R->F, Lo = R->Lo, p = R->pool, s = R->stride;
    const int rs = W * C;
    const float *x = R->in;
    float *y = R->out;
    if (R->kind == RK_AVGPOOL) {
        mk_args_t g = {0};
        g.a = x;
        g.y = y;
        g.n = (uint32_t)rs;
        g.as = 4u * (uint32_t)rs;
        g.ts = 4u * (uint32_t)(s * rs);
        g.ys = 4u * (uint32_t)rs;
        g.nb = (uint32_t)Lo;
        g.k0 = p;
        g.scale = (float)(1.0 / p);
        ROWSUM(&g);
        return;
    }
    for (int m = 0; m < Lo; m++) {
        const float *x0 = x + (m * s) * rs;
        float *yo = y + m * rs;
        for (int j = 0; j < rs; j++) {
            float a = x0[j];
            for (int q = 1; q < p; q++) {
                float v = x0[q * rs + j];
                a = v > a ? v : a;
            }
            yo[j] = a;
        }
    }
}

void k_pool_bwd(const rlayer_t *R, const float *dy, float *dx) {
    const int W = R->W, C = R->F, Lo = R->Lo, p = R->pool, s = R->stride, L = R->L;
    const int rs = W * C;
    const float inv = (float)(1.0 / p);
    if (R->kind == RK_AVGPOOL && p == s) { /* windows tile the input: every dx row is written once */
        mk_args_t g = {0};
        g.a = dy;
        g.y = dx;
        g.n = (uint32_t)rs;
        g.as = 4u * (uint32_t)rs;
        g.ts = 4u * (uint32_t)(s * rs);
        g.ys = 4u * (uint32_t)rs;
        g.nb = (uint32_t)Lo;
        g.k0 = p;
        g.scale = inv;
        ROWSPREAD(&g);
        if (L > Lo * s) memset(dx + Lo * s * rs, 0, sizeof(float) * (size_t)(L - Lo * s) * rs);
        return;
    }
    memset(dx, 0, sizeof(float) * (size_t)L * rs);
    for (int m = 0; m < Lo; m++) {
        const float *dr = dy + m * rs;
        float *d0 = dx + (m * s) * rs;
        if (R->kind == RK_AVGPOOL) {
            for (int q = 0; q < p; q++)
                for (int j = 0; j < rs; j++) d0[q * rs + j] += dr[j] * inv;
        } else {
            const float *x0 = R->in + (m * s) * rs;
            for (int j = 0; j < rs; j++) {
                int best = 0;
                float a = x0[j];
                for (int q = 1; q < p; q++)
                    if (x0[q * rs + j] > a) a = x0[q * rs + j], best = q;
                d0[best * rs + j] += dr[j];
            }
        }
    }
}

void k_global_fwd(const rlayer_t *R) {
    const int C = R->F;
    const int n = (int)(R->in_n / (uint32_t)C);
    const float *x = R->in;
    float *y = R->out;
    if (R->kind == RK_GAP) {
        mk_args_t g = {0};
        g.a = x;
        g.y = y;
        g.n = (uint32_t)C;
        g.as = 4u * (uint32_t)C;
        g.nb = 1;
        g.k0 = n;
        g.scale = (float)(1.0 / n);
        ROWSUM(&g);
    } else {
        for (int c = 0; c < C; c++) y[c] = x[c];
        for (int i = 1; i < n; i++)
            for (int c = 0; c < C; c++)
                if (x[i * C + c] > y[c]) y[c] = x[i * C + c];
    }
}

void k_global_bwd(const rlayer_t *R, const float *dy, float *dx) {
    const int C = R->F;
    const int n = (int)(R->in_n / (uint32_t)C);
    if (R->kind == RK_GAP) {
        mk_args_t g = {0};
        g.a = dy;
        g.y = dx;
        g.n = (uint32_t)C;
        g.ys = 4u * (uint32_t)C;
        g.nb = 1;
        g.k0 = n;
        g.scale = (float)(1.0 / n);
        ROWSPREAD(&g);
    } else {
        const float *x = R->in;
        memset(dx, 0, sizeof(float) * (size_t)n * C);
        for (int c = 0; c < C; c++) {
            int best = 0;
            float a = x[c];
            for (int i = 1; i < n; i++)
                if (x[i * C + c] > a) a = x[i * C + c], best = i;
            dx[best * C + c] = dy[c];
        }
    }
}

void k_bn_prepare(rlayer_t *R) {
    for (int c = 0; c < R->C; c++) {
        float inv = sqrtf(R->var[c] + R->eps);
        inv = 1.0f / inv;
        R->s[c] = R->w[c] * inv;
        R->t[c] = R->b[c] - R->mean[c] * R->s[c];
    }
}

void k_bn_fwd(const rlayer_t *R) {
    const int C = R->C;
    const uint32_t n = R->in_n / (uint32_t)C;
    const float *x = R->in;
    float *y = R->out;
    for (uint32_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            float v = x[i * C + c] * R->s[c];
            y[i * C + c] = v + R->t[c];
        }
}

void k_bn_bwd(const rlayer_t *R, float *dy) {
    const int C = R->C;
    const uint32_t n = R->in_n / (uint32_t)C;
    if (R->trainable) {
        const float *x = R->in; /* a trained BatchNorm is not in place (model.c): its input is intact */
        for (int c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(R->var[c] + R->eps);
            float gg = 0, gb = 0;
            for (uint32_t i = 0; i < n; i++) {
                float xh = (x[i * C + c] - R->mean[c]) * inv;
                gg += xh * dy[i * C + c];
                gb += dy[i * C + c];
            }
            R->gw[c] += gg;
            R->gb[c] += gb;
        }
    }
    if (R->needs_dx)
        for (uint32_t i = 0; i < n; i++)
            for (int c = 0; c < C; c++) dy[i * C + c] *= R->s[c];
}

/* exp and log in single precision from + - * / only, so the board and the host compute the same bits (the C
 * libraries' expf/logf differ in the last bit between newlib and glibc); within 1.5 ulp (exp), 3 ulp (log). */
float odl_expf(float x) {
    if (x != x) return x;
    if (x > 88.72283f) return HUGE_VALF;
    if (x < -103.97208f) return 0.0f;
    const float t = x * 0x1.715476p+0f; /* log2(e) */
    int n = (int)(t < 0.0f ? t - 0.5f : t + 0.5f);
    const float fn = (float)n;
    float r = x - fn * 0x1.62e400p-1f; /* ln 2, high part (exact product for |n| < 2^9) */
    r = r - fn * 0x1.7f7d1cp-20f;      /* ln 2, low part */
    float p = 0x1.a01a02p-13f;         /* 1/5040 */
    p = 0x1.6c16c2p-10f + r * p;       /* 1/720 */
    p = 0x1.111112p-7f + r * p;        /* 1/120 */
    p = 0x1.555556p-5f + r * p;        /* 1/24 */
    p = 0x1.555556p-3f + r * p;        /* 1/6 */
    p = 0.5f + r * p;
    p = 1.0f + r * p;
    p = 1.0f + r * p;
    union {
        float f;
        uint32_t u;
    } sc;
    if (n < -126) { /* subnormal result: two steps */
        sc.u = (uint32_t)(n + 64 + 127) << 23;
        p *= sc.f;
        sc.u = (uint32_t)(-64 + 127) << 23;
        return p * sc.f;
    }
    if (n > 127) {
        sc.u = (uint32_t)(127 + 127) << 23;
        return p * sc.f * 2.0f;
    }
    sc.u = (uint32_t)(n + 127) << 23;
    return p * sc.f;
}

float odl_logf(float x) {
    if (x != x || x < 0.0f) return NAN;
    if (x == 0.0f) return -HUGE_VALF;
    if (x == HUGE_VALF) return x;
    union {
        float f;
        uint32_t u;
    } m = {x};
    int e = 0;
    if (m.u < 0x00800000u) { /* subnormal */
        m.f *= 0x1p23f;
        e = -23;
    }
    e += (int)(m.u >> 23) - 127;
    m.u = (m.u & 0x007FFFFFu) | 0x3F800000u; /* m in [1, 2) */
    if (m.f > 0x1.6a09e6p+0f) {              /* sqrt(2): m in [sqrt(1/2), sqrt(2)) */
        m.f *= 0.5f;
        e += 1;
    }
    const float s = (m.f - 1.0f) / (m.f + 1.0f);
    const float z = s * s;
    float q = 0x1.745d18p-4f;      /* 1/11 */
    q = 0x1.c71c72p-4f + z * q;    /* 1/9 */
    q = 0x1.24924ap-3f + z * q;    /* 1/7 */
    q = 0x1.99999ap-3f + z * q;    /* 1/5 */
    q = 0x1.555556p-2f + z * q;    /* 1/3 */
    q = 1.0f + z * q;
    const float lm = 2.0f * s * q; /* log(m) */
    const float fe = (float)e;
    return fe * 0x1.62e400p-1f + (lm + fe * 0x1.7f7d1cp-20f);
}

float k_softmax_fwd(const rlayer_t *R, int label, int *argmax) {
    const int N = (int)R->out_n;
    const float *x = R->in;
    float *p = R->out;
    float m = x[0];
    for (int i = 1; i < N; i++) m = x[i] > m ? x[i] : m;
    float ssum = 0.0f, zl = 0.0f;
    for (int i = 0; i < N; i++) {
        float z = x[i] - m;
        if (i == label) zl = z;
        p[i] = odl_expf(z);
        ssum += p[i];
    }
    int best = 0;
    for (int i = 0; i < N; i++) {
        p[i] = p[i] / ssum;
        if (p[i] > p[best]) best = i;
    }
    *argmax = best;
    return odl_logf(ssum) - zl;
}

void k_softmax_bwd(const rlayer_t *R, int label, float *dz) {
    const int N = (int)R->out_n;
    for (int i = 0; i < N; i++) dz[i] = R->out[i] - (i == label ? 1.0f : 0.0f);
}

void k_sgd(float *w, float *acc, uint32_t len, float n, float lr) {
    union {
        float f;
        uint32_t u;
    } c = {n};
    if ((c.u & 0x007FFFFFu) == 0 && c.u >= 0x3F800000u && c.u < 0x7F000000u) {
        /* n a power of two: a / n == a * (1 / n) exactly */
        mk_args_t g = {0};
        g.a = acc;
        g.y = w;
        g.n = len;
        g.scale = 1.0f / n;
        g.lr = lr;
        SGD(&g);
        return;
    }
    for (uint32_t i = 0; i < len; i++) {
        float a = acc[i] / n;
        a = a * lr;
        w[i] = w[i] - a;
        acc[i] = 0.0f;
    }
}
