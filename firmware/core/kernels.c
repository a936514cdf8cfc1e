/*
 * Per-sample kernels.  The convolution and dense kernels are register-blocked (4 x 4 accumulators for the
 * convolutions, 8 for dense) so each loaded value feeds several multiply-adds: on the Cortex-M4F a VLDR
 * costs 2 cycles and a VMUL + VADD pair 2, so the blocking (not the arithmetic) decides cycles per MAC
 * (docs/firmware.md, "Kernels").  Built with -ffp-contract=off: separate VMUL/VADD (1 + 1 cycles) instead
 * of a fused VFMA (3 cycles), and the same two roundings as the float32 reference.
 */
#include "kernels.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------ */
/* Conv (K x 1 along time, 'valid', stride 1), per axis column w.                                  */
/* ------------------------------------------------------------------------------------------------ */
#define ACC4(a, x, w0, w1, w2, w3) \
    do {                            \
        a##0 += (x) * (w0);         \
        a##1 += (x) * (w1);         \
        a##2 += (x) * (w2);         \
        a##3 += (x) * (w3);         \
    } while (0)

void k_conv_fwd(const rlayer_t *R) {
    const int W = R->W, C = R->C, K = R->K, F = R->F, Lo = R->Lo;
    const int xs = W * C, ys = W * F;
    const float *wk = R->w, *b = R->b;
    for (int w = 0; w < W; w++) {
        const float *x = R->in + w * C;
        float *y = R->out + w * F;
        int m = 0;
        for (; m + 4 <= Lo; m += 4) {
            int f = 0;
            for (; f + 4 <= F; f += 4) {
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
                float c0 = 0, c1 = 0, c2 = 0, c3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
                for (int k = 0; k < K; k++) {
                    const float *xr = x + (m + k) * xs;
                    const float *wr = wk + (k * C) * F + f;
                    for (int c = 0; c < C; c++, wr += F) {
                        float w0 = wr[0], w1 = wr[1], w2 = wr[2], w3 = wr[3];
                        float x0 = xr[c], x1 = xr[xs + c], x2 = xr[2 * xs + c], x3 = xr[3 * xs + c];
                        ACC4(a, x0, w0, w1, w2, w3);
                        ACC4(b, x1, w0, w1, w2, w3);
                        ACC4(c, x2, w0, w1, w2, w3);
                        ACC4(d, x3, w0, w1, w2, w3);
                    }
                }
                float *y0 = y + m * ys + f, *y1 = y0 + ys, *y2 = y1 + ys, *y3 = y2 + ys;
                if (b) {
                    float e0 = b[f], e1 = b[f + 1], e2 = b[f + 2], e3 = b[f + 3];
                    a0 += e0, a1 += e1, a2 += e2, a3 += e3, b0 += e0, b1 += e1, b2 += e2, b3 += e3;
                    c0 += e0, c1 += e1, c2 += e2, c3 += e3, d0 += e0, d1 += e1, d2 += e2, d3 += e3;
                }
                y0[0] = a0, y0[1] = a1, y0[2] = a2, y0[3] = a3;
                y1[0] = b0, y1[1] = b1, y1[2] = b2, y1[3] = b3;
                y2[0] = c0, y2[1] = c1, y2[2] = c2, y2[3] = c3;
                y3[0] = d0, y3[1] = d1, y3[2] = d2, y3[3] = d3;
            }
            for (; f < F; f++)
                for (int i = 0; i < 4; i++) {
                    float a = 0;
                    for (int k = 0; k < K; k++) {
                        const float *xr = x + (m + i + k) * xs;
                        const float *wr = wk + (k * C) * F + f;
                        for (int c = 0; c < C; c++) a += xr[c] * wr[c * F];
                    }
                    y[(m + i) * ys + f] = b ? a + b[f] : a;
                }
        }
        for (; m < Lo; m++)
            for (int f = 0; f < F; f++) {
                float a = 0;
                for (int k = 0; k < K; k++) {
                    const float *xr = x + (m + k) * xs;
                    const float *wr = wk + (k * C) * F + f;
                    for (int c = 0; c < C; c++) a += xr[c] * wr[c * F];
                }
                y[m * ys + f] = b ? a + b[f] : a;
            }
    }
}

/* dW: gw[(k C + c) F + f] += sum over (w, m) of x[(m + k) W + w][c] * dy[m W + w][f];  gb[f] += sum dy. */
static void conv_dw(const rlayer_t *R, const float *dy) {
    const int W = R->W, C = R->C, K = R->K, F = R->F, Lo = R->Lo;
    const int xs = W * C, ys = W * F;
    float *gw = R->gw;
    for (int k = 0; k < K; k++) {
        int c = 0;
        for (; c + 4 <= C; c += 4) {
            int f = 0;
            for (; f + 4 <= F; f += 4) {
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
                float c0 = 0, c1 = 0, c2 = 0, c3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
                for (int w = 0; w < W; w++) {
                    const float *xr = R->in + k * xs + w * C + c;
                    const float *dr = dy + w * F + f;
                    for (int m = 0; m < Lo; m++, xr += xs, dr += ys) {
                        float g0 = dr[0], g1 = dr[1], g2 = dr[2], g3 = dr[3];
                        float x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
                        ACC4(a, x0, g0, g1, g2, g3);
                        ACC4(b, x1, g0, g1, g2, g3);
                        ACC4(c, x2, g0, g1, g2, g3);
                        ACC4(d, x3, g0, g1, g2, g3);
                    }
                }
                float *r0 = gw + (k * C + c) * F + f, *r1 = r0 + F, *r2 = r1 + F, *r3 = r2 + F;
                r0[0] += a0, r0[1] += a1, r0[2] += a2, r0[3] += a3;
                r1[0] += b0, r1[1] += b1, r1[2] += b2, r1[3] += b3;
                r2[0] += c0, r2[1] += c1, r2[2] += c2, r2[3] += c3;
                r3[0] += d0, r3[1] += d1, r3[2] += d2, r3[3] += d3;
            }
            for (; f < F; f++)
                for (int i = 0; i < 4; i++) {
                    float a = 0;
                    for (int w = 0; w < W; w++)
                        for (int m = 0; m < Lo; m++) a += R->in[(m + k) * xs + w * C + c + i] * dy[m * ys + w * F + f];
                    gw[(k * C + c + i) * F + f] += a;
                }
        }
        for (; c < C; c++) {
            int f = 0;
            for (; f + 4 <= F; f += 4) {
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (int w = 0; w < W; w++) {
                    const float *xr = R->in + k * xs + w * C + c;
                    const float *dr = dy + w * F + f;
                    for (int m = 0; m < Lo; m++, xr += xs, dr += ys) ACC4(a, xr[0], dr[0], dr[1], dr[2], dr[3]);
                }
                float *r0 = gw + (k * C + c) * F + f;
                r0[0] += a0, r0[1] += a1, r0[2] += a2, r0[3] += a3;
            }
            for (; f < F; f++) {
                float a = 0;
                for (int w = 0; w < W; w++)
                    for (int m = 0; m < Lo; m++) a += R->in[(m + k) * xs + w * C + c] * dy[m * ys + w * F + f];
                gw[(k * C + c) * F + f] += a;
            }
        }
    }
    if (R->gb) {
        const int n = Lo * W;
        int f = 0;
        for (; f + 4 <= F; f += 4) {
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            const float *dr = dy + f;
            for (int i = 0; i < n; i++, dr += F) a0 += dr[0], a1 += dr[1], a2 += dr[2], a3 += dr[3];
            R->gb[f] += a0, R->gb[f + 1] += a1, R->gb[f + 2] += a2, R->gb[f + 3] += a3;
        }
        for (; f < F; f++) {
            float a = 0;
            for (int i = 0; i < n; i++) a += dy[i * F + f];
            R->gb[f] += a;
        }
    }
}

/* dX (the paper's eq. 5 without the zero products): dx[l W + w][c] = sum_k sum_f dy[(l-k) W + w][f] *
 * w[(k C + c) F + f] over 0 <= l - k < Lo. */
static void conv_dx(const rlayer_t *R, const float *dy, float *dx) {
    const int W = R->W, C = R->C, K = R->K, F = R->F, Lo = R->Lo, L = R->L;
    const int xs = W * C, ys = W * F;
    const float *wk = R->w;
    for (int w = 0; w < W; w++) {
        for (int l = 0; l < L; l++) {
            int kmin = l - (Lo - 1) > 0 ? l - (Lo - 1) : 0;
            int kmax = l < K - 1 ? l : K - 1;
            float *out = dx + l * xs + w * C;
            int c = 0;
            for (; c + 4 <= C; c += 4) {
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (int k = kmin; k <= kmax; k++) {
                    const float *dr = dy + (l - k) * ys + w * F;
                    const float *w0 = wk + (k * C + c) * F, *w1 = w0 + F, *w2 = w1 + F, *w3 = w2 + F;
                    for (int f = 0; f < F; f++) {
                        float d = dr[f];
                        a0 += d * w0[f], a1 += d * w1[f], a2 += d * w2[f], a3 += d * w3[f];
                    }
                }
                out[c] = a0, out[c + 1] = a1, out[c + 2] = a2, out[c + 3] = a3;
            }
            for (; c < C; c++) {
                float a = 0;
                for (int k = kmin; k <= kmax; k++) {
                    const float *dr = dy + (l - k) * ys + w * F;
                    const float *w0 = wk + (k * C + c) * F;
                    for (int f = 0; f < F; f++) a += dr[f] * w0[f];
                }
                out[c] = a;
            }
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
void k_dense_fwd(const rlayer_t *R) {
    const int N = R->C, U = R->F;
    const float *x = R->in, *wk = R->w, *b = R->b;
    float *y = R->out;
    int u = 0;
    for (; u + 8 <= U; u += 8) {
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
        const float *wr = wk + u;
        for (int n = 0; n < N; n++, wr += U) {
            float xv = x[n];
            a0 += xv * wr[0], a1 += xv * wr[1], a2 += xv * wr[2], a3 += xv * wr[3];
            a4 += xv * wr[4], a5 += xv * wr[5], a6 += xv * wr[6], a7 += xv * wr[7];
        }
        if (b) {
            a0 += b[u], a1 += b[u + 1], a2 += b[u + 2], a3 += b[u + 3];
            a4 += b[u + 4], a5 += b[u + 5], a6 += b[u + 6], a7 += b[u + 7];
        }
        y[u] = a0, y[u + 1] = a1, y[u + 2] = a2, y[u + 3] = a3, y[u + 4] = a4, y[u + 5] = a5, y[u + 6] = a6, y[u + 7] = a7;
    }
    for (; u < U; u++) {
        float a = 0;
        for (int n = 0; n < N; n++) a += x[n] * wk[n * U + u];
        y[u] = b ? a + b[u] : a;
    }
}

void k_dense_bwd(const rlayer_t *R, const float *dy, float *dx) {
    const int N = R->C, U = R->F;
    if (R->trainable) {
        const float *x = R->in;
        float *gw = R->gw;
        for (int n = 0; n < N; n++) {
            float xv = x[n];
            float *g = gw + n * U;
            int u = 0;
            for (; u + 4 <= U; u += 4) {
                g[u] += xv * dy[u];
                g[u + 1] += xv * dy[u + 1];
                g[u + 2] += xv * dy[u + 2];
                g[u + 3] += xv * dy[u + 3];
            }
            for (; u < U; u++) g[u] += xv * dy[u];
        }
        if (R->gb)
            for (int u = 0; u < U; u++) R->gb[u] += dy[u];
    }
    if (R->needs_dx) {
        const float *wk = R->w;
        int n = 0;
        for (; n + 4 <= N; n += 4) {
            const float *w0 = wk + n * U, *w1 = w0 + U, *w2 = w1 + U, *w3 = w2 + U;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int u = 0; u < U; u++) {
                float d = dy[u];
                a0 += d * w0[u], a1 += d * w1[u], a2 += d * w2[u], a3 += d * w3[u];
            }
            dx[n] = a0, dx[n + 1] = a1, dx[n + 2] = a2, dx[n + 3] = a3;
        }
        for (; n < N; n++) {
            float a = 0;
            for (int u = 0; u < U; u++) a += dy[u] * wk[n * U + u];
            dx[n] = a;
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Elementwise layers                                                                               */
/* ------------------------------------------------------------------------------------------------ */
void k_relu_fwd(const rlayer_t *R) {
    float *y = R->out;
    const float *x = R->in;
    for (uint32_t i = 0; i < R->out_n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void k_relu_bwd(const rlayer_t *R, float *dy) {
    const float *y = R->out;
    for (uint32_t i = 0; i < R->out_n; i++)
        if (!(y[i] > 0.0f)) dy[i] = 0.0f;
}

void k_pool_fwd(const rlayer_t *R) {
    const int W = R->W, C = R->F, Lo = R->Lo, p = R->pool, s = R->stride;
    const int rs = W * C;
    const float *x = R->in;
    float *y = R->out;
    const float inv = (float)(1.0 / p);
    const int is_max = R->kind == RK_MAXPOOL;
    for (int m = 0; m < Lo; m++) {
        const float *x0 = x + (m * s) * rs;
        float *yo = y + m * rs;
        for (int j = 0; j < rs; j++) {
            float a = x0[j];
            for (int q = 1; q < p; q++) {
                float v = x0[q * rs + j];
                if (is_max) a = v > a ? v : a;
                else a += v;
            }
            yo[j] = is_max ? a : a * inv;
        }
    }
}

void k_pool_bwd(const rlayer_t *R, const float *dy, float *dx) {
    const int W = R->W, C = R->F, Lo = R->Lo, p = R->pool, s = R->stride, L = R->L;
    const int rs = W * C;
    const float inv = (float)(1.0 / p);
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
        const float inv = (float)(1.0 / n);
        for (int c = 0; c < C; c++) y[c] = 0.0f;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++) y[c] += x[i * C + c];
        for (int c = 0; c < C; c++) y[c] *= inv;
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
        const float inv = (float)(1.0 / n);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++) dx[i * C + c] = dy[c] * inv;
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
        p[i] = expf(z);
        ssum += p[i];
    }
    int best = 0;
    for (int i = 0; i < N; i++) {
        p[i] = p[i] / ssum;
        if (p[i] > p[best]) best = i;
    }
    *argmax = best;
    return logf(ssum) - zl;
}

void k_softmax_bwd(const rlayer_t *R, int label, float *dz) {
    const int N = (int)R->out_n;
    for (int i = 0; i < N; i++) dz[i] = R->out[i] - (i == label ? 1.0f : 0.0f);
}

void k_sgd(float *w, float *acc, uint32_t len, float n, float lr) {
    for (uint32_t i = 0; i < len; i++) {
        float a = acc[i] / n;
        a = a * lr;
        w[i] = w[i] - a;
    }
}
