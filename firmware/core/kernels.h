/*
 * Numeric kernels of the runtime layers, one sample at a time (the paper's per-sample training with
 * gradient accumulation).  Shapes: spatial tensors (L, W, C) row-major (W = 1 for 1-D models, 3 for ST's
 * Conv2D (k x 1) models), flat tensors (N).  Conv kernels (K*C, F) and dense kernels (N, U) in Keras
 * layout.  What each computes is exactly device/engine/kernels.py for a batch of one.
 */
#ifndef ODL_KERNELS_H
#define ODL_KERNELS_H

#include "model.h"

/* forward */
void k_conv_fwd(const rlayer_t *R);
void k_dense_fwd(const rlayer_t *R);
void k_relu_fwd(const rlayer_t *R);
void k_pool_fwd(const rlayer_t *R);
void k_global_fwd(const rlayer_t *R);
void k_bn_prepare(rlayer_t *R); /* s, t from gamma/beta/mean/var */
void k_bn_fwd(const rlayer_t *R);
/* softmax + cross-entropy of one sample: probabilities to R->out; returns the loss; *argmax = prediction */
float k_softmax_fwd(const rlayer_t *R, int label, int *argmax);

/* backward: dy is dL/d(output); dx (if the layer computes it) dL/d(input) */
void k_softmax_bwd(const rlayer_t *R, int label, float *dz);
void k_conv_bwd(const rlayer_t *R, const float *dy, float *dx);
void k_dense_bwd(const rlayer_t *R, const float *dy, float *dx);
void k_relu_bwd(const rlayer_t *R, float *dy); /* in place */
void k_pool_bwd(const rlayer_t *R, const float *dy, float *dx);
void k_global_bwd(const rlayer_t *R, const float *dy, float *dx);
void k_bn_bwd(const rlayer_t *R, float *dy); /* parameter gradients; dx = dy*s in place if needed */

/* the grouped head (model.h, plan_t.group): gn windows at once (4: the blocked kernels; fewer: one at a time),
 * the same bits as gn calls of k_dense_fwd / k_dense_bwd; dy, dx: slot 0 of error buffers with es floats per
 * window */
void k_dense_fwd_group(const rlayer_t *R, int gn);
void k_dense_bwd_group(const rlayer_t *R, int gn, const float *dy, float *dx, uint32_t es);

/* exp and log in single precision from + - * / only: the same bits on the board and the host, within 1.5 ulp
 * (exp) and 3 ulp (log) of the true values over the whole float range, subnormals, 0, infinities and NaN
 * included (tests/device/test_firmware_host.py) */
float odl_expf(float x);
float odl_logf(float x);

/* SGD step of one parameter array: a = a/n; a = a*lr; w = w - a (device/engine per-sample mode); the
 * accumulator is zeroed on the way (ready for the next batch). */
void k_sgd(float *w, float *acc, uint32_t len, float n, float lr);

#endif
