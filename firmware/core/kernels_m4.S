/*
 * Cortex-M4F kernels for the hot loops of kernels.c (ARM targets only).  kernels.c holds a C twin of each
 * (same sums, same order, same roundings), which the host build runs; tests/device/test_firmware_host.py runs
 * the layer vectors through the ARM build under QEMU and requires the same bits as the host build.
 *
 * Why assembly: on the M4F a VLDR costs 2 cycles but a VLDM of n registers 1 + n; a VMUL + VADD pair costs
 * 2 cycles where a chained VMLA costs 3 (same two roundings) and a fused VFMA 3 (one rounding, unlike the
 * reference); GCC neither groups loads into VLDM nor keeps 12-16 accumulators plus operands in the 32 S
 * registers.  Each kernel keeps a block of accumulators in s16-s31 (or s20-s31) for a whole inner loop and
 * multiplies into a temporary, alternating two temporaries so that a VADD never needs the VMUL just
 * before it.  Outer loops run inside the kernels too: a call costs ~60 cycles of register saving, which
 * small layers (7 output rows at T = 20) would otherwise pay per 4 x 4 block.
 *
 * Every kernel takes one argument, a pointer to mk_args_t (kernels.c; offsets below).  AAPCS: r4-r11,
 * lr and s16-s31 are saved.  Strides are in bytes.  The ReLU applied on store is integer: a float whose
 * sign bit is set becomes +0 (bic r, r, r, asr #31), i.e. max(x, 0) for every number (a NaN with the sign
 * bit set becomes 0 too; the reference would propagate it).
 */
    .syntax unified
    .cpu cortex-m4
    .fpu fpv4-sp-d16
    .thumb

    .equ A_A, 0         @ const float *a
    .equ A_W, 4         @ const float *w
    .equ A_B, 8         @ const float *b (bias) or NULL
    .equ A_Y, 12        @ float *y
    .equ A_N, 16        @ inner length
    .equ A_AS, 20       @ a row stride (bytes)
    .equ A_WS, 24       @ w row stride (bytes)
    .equ A_YS, 28       @ y row stride (bytes)
    .equ A_NB, 32       @ number of output blocks
    .equ A_RELU, 36     @ apply ReLU on store
    .equ A_TS, 40       @ conv: tap stride of w; row sums: input advance per output row (bytes)
    .equ A_K0, 44       @ conv dX: first tap; row sums: rows summed
    .equ A_K1, 48       @ conv dX: last tap
    .equ A_SCALE, 52    @ row sums / SGD: float scale
    .equ A_LR, 56       @ SGD: float learning rate

    .section .rodata.odl_mk_zero, "a"
    .align 3
odl_mk_zero:
    .rept 20
    .float 0.0
    .endr

    .text

/* acc0 += a0 * b0, acc1 += a1 * b1 through the temporaries s10 / s11 */
.macro MAC2 acc0, a0, b0, acc1, a1, b1
    vmul.f32 s10, \a0, \b0
    vmul.f32 s11, \a1, \b1
    vadd.f32 \acc0, \acc0, s10
    vadd.f32 \acc1, \acc1, s11
.endm
/* the same through s16 / s17 (kernels whose accumulators start at s20) */
.macro MAC2T acc0, a0, b0, acc1, a1, b1
    vmul.f32 s16, \a0, \b0
    vmul.f32 s17, \a1, \b1
    vadd.f32 \acc0, \acc0, s16
    vadd.f32 \acc1, \acc1, s17
.endm
/* one row of a 4-wide block: acc[0..3] += x * s6..s9 */
.macro ROW4 x, c0, c1, c2, c3
    MAC2 \c0, \x, s6, \c1, \x, s7
    MAC2 \c2, \x, s8, \c3, \x, s9
.endm
/* the same, first product: acc = x * w */
.macro ROW4_INIT x, c0, c1, c2, c3
    vmul.f32 \c0, \x, s6
    vmul.f32 \c1, \x, s7
    vmul.f32 \c2, \x, s8
    vmul.f32 \c3, \x, s9
.endm
/* R rows of 4 accumulators (row i at s16 + 4 i) times the weights s6-s9, row i using x_i */
.macro TAPR R, x0, x1, x2, x3
    ROW4 \x0, s16, s17, s18, s19
    .if \R > 1
    ROW4 \x1, s20, s21, s22, s23
    .endif
    .if \R > 2
    ROW4 \x2, s24, s25, s26, s27
    .endif
    .if \R > 3
    ROW4 \x3, s28, s29, s30, s31
    .endif
.endm
.macro TAPR_INIT R, x0, x1, x2, x3
    ROW4_INIT \x0, s16, s17, s18, s19
    .if \R > 1
    ROW4_INIT \x1, s20, s21, s22, s23
    .endif
    .if \R > 2
    ROW4_INIT \x2, s24, s25, s26, s27
    .endif
    .if \R > 3
    ROW4_INIT \x3, s28, s29, s30, s31
    .endif
.endm
/* zero the accumulators of R rows (s16 + 4 i); uses \tmp */
.macro ZERO_ROWS R, tmp
    ldr \tmp, =odl_mk_zero
    .if \R == 1
    vldm \tmp, {s16-s19}
    .elseif \R == 2
    vldm \tmp, {s16-s23}
    .elseif \R == 3
    vldm \tmp, {s16-s27}
    .else
    vldm \tmp, {s16-s31}
    .endif
.endm
/* store 4 consecutive S registers at [p] with the integer ReLU (through r4-r7); p += 16 */
.macro STR4_RELU sa, sb, sc, sd, p
    vmov r4, r5, \sa, \sb
    vmov r6, r7, \sc, \sd
    bic r4, r4, r4, asr #31
    bic r5, r5, r5, asr #31
    bic r6, r6, r6, asr #31
    bic r7, r7, r7, asr #31
    stmia \p!, {r4-r7}
.endm

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_conv3_rR(args), R = 1..4: Conv1D forward (W = 1, K = 3), R output rows, every filter block.
 *   y[i * ys + 4 f] = act(b[f] + sum_{c < n} sum_{k < 3} a[(i + k) * as + 4 c] * w[k * ts + c * ws + 4 f])
 *   for i < R, f < 4 nb: the sum starts from the bias (0 without one), c outer, k inner.  Per channel: R + 2 x loads, 3 VLDM of 4 weights,
 *   12 R multiply-adds.
 * ----------------------------------------------------------------------------------------------------
 */
/* one input channel of the R-row conv block: x rows r5.. (post-increment), taps r0-r2 (+= ws r3) */
.macro CONV3_CHANNEL R
    vldmia r5!, {s0}
    vldmia r6!, {s1}
    vldmia r7!, {s2}
    .if \R > 1
    vldmia r8!, {s3}
    .endif
    .if \R > 2
    vldmia r9!, {s4}
    .endif
    .if \R > 3
    vldmia r10!, {s5}
    .endif
    vldm r0, {s6-s9}
    add r0, r0, r3
    TAPR \R, s0, s1, s2, s3
    vldm r1, {s6-s9}
    add r1, r1, r3
    TAPR \R, s1, s2, s3, s4
    vldm r2, {s6-s9}
    add r2, r2, r3
    TAPR \R, s2, s3, s4, s5
.endm

.macro CONV3 R
    .global odl_mk_conv3_r\R
    .type odl_mk_conv3_r\R, %function
    .thumb_func
odl_mk_conv3_r\R:
    push {r4-r11, lr}
    vpush {s16-s31}
    sub sp, sp, #8
    str r0, [sp]                    @ [sp] args, [sp + 4] weights of the current filter block
    ldr r1, [r0, #A_W]
    str r1, [sp, #4]
    ldr lr, [r0, #A_NB]
    ldr r11, [r0, #A_Y]
    ldr r12, [r0, #A_B]
    ldr r3, [r0, #A_WS]
10:
    cmp r12, #0                     @ the sums start from the bias (or 0)
    bne 9f
    ZERO_ROWS \R, r5
    b 8f
9:
    vldm r12, {s16-s19}
    .if \R > 1
    vldm r12, {s20-s23}
    .endif
    .if \R > 2
    vldm r12, {s24-s27}
    .endif
    .if \R > 3
    vldm r12, {s28-s31}
    .endif
    add r12, r12, #16
8:
    ldr r0, [sp]
    ldr r4, [r0, #A_N]
    ldr r1, [r0, #A_AS]
    ldr r5, [r0, #A_A]              @ x rows: r5, r6, r7 (+ r8, r9, r10)
    add r6, r5, r1
    add r7, r6, r1
    .if \R > 1
    add r8, r7, r1
    .endif
    .if \R > 2
    add r9, r8, r1
    .endif
    .if \R > 3
    add r10, r9, r1
    .endif
    ldr r2, [r0, #A_TS]
    ldr r0, [sp, #4]                @ taps: r0, r1, r2
    add r1, r0, r2
    add r2, r1, r2
    tst r4, #1                      @ n mod 4 channels first (1, then 2), then fours
    beq 11f
    CONV3_CHANNEL \R
    subs r4, r4, #1
    beq 20f
11:
    tst r4, #2
    beq 12f
    CONV3_CHANNEL \R
    CONV3_CHANNEL \R
    subs r4, r4, #2
    beq 20f
12:
    CONV3_CHANNEL \R
    CONV3_CHANNEL \R
    CONV3_CHANNEL \R
    CONV3_CHANNEL \R
    subs r4, r4, #4
    bne 12b
20:
    ldr r0, [sp]
    ldr r9, [r0, #A_YS]
    ldr r0, [r0, #A_RELU]
    sub r8, r9, #16                 @ row step after a 16-byte post-increment
    mov r1, r11
    cmp r0, #0
    beq 30f
    STR4_RELU s16, s17, s18, s19, r1
    .if \R > 1
    add r1, r1, r8
    STR4_RELU s20, s21, s22, s23, r1
    .endif
    .if \R > 2
    add r1, r1, r8
    STR4_RELU s24, s25, s26, s27, r1
    .endif
    .if \R > 3
    add r1, r1, r8
    STR4_RELU s28, s29, s30, s31, r1
    .endif
    b 40f
30:
    vstm r1, {s16-s19}
    .if \R > 1
    add r1, r1, r9
    vstm r1, {s20-s23}
    .endif
    .if \R > 2
    add r1, r1, r9
    vstm r1, {s24-s27}
    .endif
    .if \R > 3
    add r1, r1, r9
    vstm r1, {s28-s31}
    .endif
40:
    add r11, r11, #16
    ldr r0, [sp, #4]
    add r0, r0, #16
    str r0, [sp, #4]
    subs lr, lr, #1
    bne 10b
    add sp, sp, #8
    vpop {s16-s31}
    pop {r4-r11, pc}
    .ltorg
    .size odl_mk_conv3_r\R, . - odl_mk_conv3_r\R
.endm

    CONV3 1
    CONV3 2
    CONV3 3
    CONV3 4

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_outer_rR(args), R = 1..4: weight-gradient block of R rows x 4 columns, every column block.
 *   y[i * ys + 4 f] += sum_{m < n} a[m * as + 4 i] * w[m * ws + 4 f]        (i < R, f < 4 nb, n >= 1)
 *   (conv dW: a = 4 consecutive im2col columns of x, w = dy; y = the gradient accumulator).  The sum
 *   starts from the first product (no + 0) and is added to y after the last.
 * ----------------------------------------------------------------------------------------------------
 */
.macro LOADA R
    .if \R == 1
    vldm r0, {s0}
    .elseif \R == 2
    vldm r0, {s0-s1}
    .elseif \R == 3
    vldm r0, {s0-s2}
    .else
    vldm r0, {s0-s3}
    .endif
    add r0, r0, r1
    vldm r2, {s6-s9}
    add r2, r2, r3
.endm
/* y row (at r7) += acc row; r7 += ys (r6) */
.macro RMWROW c0, c1, c2, c3
    vldm r7, {s0-s3}
    vadd.f32 \c0, s0, \c0
    vadd.f32 \c1, s1, \c1
    vadd.f32 \c2, s2, \c2
    vadd.f32 \c3, s3, \c3
    vstm r7, {\c0-\c3}
    add r7, r7, r6
.endm
.macro OUTER R
    .global odl_mk_outer_r\R
    .type odl_mk_outer_r\R, %function
    .thumb_func
odl_mk_outer_r\R:
    push {r4-r11, lr}
    vpush {s16-s31}
    mov r12, r0                     @ args
    ldr lr, [r12, #A_NB]
    ldr r5, [r12, #A_Y]             @ y block
    ldr r6, [r12, #A_YS]
    ldr r8, [r12, #A_W]             @ w (dy) block
    ldr r3, [r12, #A_WS]
    ldr r1, [r12, #A_AS]
10:
    ldr r4, [r12, #A_N]
    ldr r0, [r12, #A_A]
    mov r2, r8
    LOADA \R
    TAPR_INIT \R, s0, s1, s2, s3
    subs r4, r4, #1
    beq 20f
    tst r4, #1
    beq 12f
    LOADA \R
    TAPR \R, s0, s1, s2, s3
    subs r4, r4, #1
    beq 20f
12:
    LOADA \R
    TAPR \R, s0, s1, s2, s3
    LOADA \R
    TAPR \R, s0, s1, s2, s3
    subs r4, r4, #2
    bne 12b
20:
    mov r7, r5
    RMWROW s16, s17, s18, s19
    .if \R > 1
    RMWROW s20, s21, s22, s23
    .endif
    .if \R > 2
    RMWROW s24, s25, s26, s27
    .endif
    .if \R > 3
    RMWROW s28, s29, s30, s31
    .endif
    add r5, r5, #16
    add r8, r8, #16
    subs lr, lr, #1
    bne 10b
    vpop {s16-s31}
    pop {r4-r11, pc}
    .size odl_mk_outer_r\R, . - odl_mk_outer_r\R
.endm

    OUTER 1
    OUTER 2
    OUTER 3
    OUTER 4

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_dot_pP(args), P = 1..3: input-gradient block of P rows x 4 channels, every channel block.
 *   y[i * ys + 4 (c + j)] = sum_{k = k0..k1} sum_{f < n} a[(i - k + k0) * as + 4 f] * w[k * ts + (c + j) * ws + 4 f]
 *   for i < P, j < 4, c = 4 cb, cb < nb (conv dX: a = the row of dy that tap k0 of input row l reads,
 *   w = the kernel; dense dX with P = 1, k0 = k1 = 0).  Each sum runs over k, then f, from 0; y is written, not accumulated.
 *   Accumulators: row i, channel j at s20 + 4 i + j; a rows: s0-s3, s4-s7, s8 s9 s12 s13; w: s14-s17;
 *   temporaries s10/s11.
 * ----------------------------------------------------------------------------------------------------
 */
/* column j (accumulators c0, c1, c2 of rows 0..P-1) += a rows . w quad (s14-s17) */
.macro DOTCOL P, c0, c1, c2
    .if \P == 1
    MAC2 \c0, s0, s14, \c0, s1, s15
    MAC2 \c0, s2, s16, \c0, s3, s17
    .elseif \P == 2
    MAC2 \c0, s0, s14, \c1, s4, s14
    MAC2 \c0, s1, s15, \c1, s5, s15
    MAC2 \c0, s2, s16, \c1, s6, s16
    MAC2 \c0, s3, s17, \c1, s7, s17
    .else
    MAC2 \c0, s0, s14, \c1, s4, s14
    MAC2 \c2, s8, s14, \c0, s1, s15
    MAC2 \c1, s5, s15, \c2, s9, s15
    MAC2 \c0, s2, s16, \c1, s6, s16
    MAC2 \c2, s12, s16, \c0, s3, s17
    MAC2 \c1, s7, s17, \c2, s13, s17
    .endif
.endm
/* single-f tail: column j += a singles (s0, s4, s8) * s14 */
.macro DOTCOL1 P, c0, c1, c2
    vmul.f32 s10, s0, s14
    .if \P > 1
    vmul.f32 s11, s4, s14
    .endif
    vadd.f32 \c0, \c0, s10
    .if \P > 1
    vadd.f32 \c1, \c1, s11
    .endif
    .if \P > 2
    vmul.f32 s10, s8, s14
    vadd.f32 \c2, \c2, s10
    .endif
.endm
.macro DOT P, name
    .global \name
    .type \name, %function
    .thumb_func
\name:
    push {r4-r11, lr}
    vpush {s16-s31}
    sub sp, sp, #16
    @ [sp] args, [sp + 4] channel blocks left, [sp + 8] w of this channel block, [sp + 12] y block
    str r0, [sp]
    ldr r1, [r0, #A_NB]
    str r1, [sp, #4]
    ldr r1, [r0, #A_W]
    str r1, [sp, #8]
    ldr r1, [r0, #A_Y]
    str r1, [sp, #12]
10: @ channel block
    ldr r0, =odl_mk_zero
    .if \P == 1
    vldm r0, {s20-s23}
    .elseif \P == 2
    vldm r0, {s20-s27}
    .else
    vldm r0, {s20-s31}
    .endif
    ldr r0, [sp]
    ldr r12, [r0, #A_K0]            @ tap k
11: @ tap
    ldr r0, [sp]
    ldr r1, [r0, #A_AS]
    ldr r2, [r0, #A_TS]
    ldr r3, [r0, #A_WS]
    ldr r4, [r0, #A_K0]
    sub r4, r12, r4
    mul r4, r4, r1
    ldr r5, [r0, #A_A]
    sub r5, r5, r4                  @ a rows: r5 (, r6, r7) at a - (k - k0) as
    .if \P > 1
    add r6, r5, r1
    .endif
    .if \P > 2
    add r7, r6, r1
    .endif
    mul r4, r12, r2
    ldr r8, [sp, #8]
    add r8, r8, r4                  @ w rows r8..r11 at w + k ts + c ws
    add r9, r8, r3
    add r10, r9, r3
    add r11, r10, r3
    ldr r4, [r0, #A_N]
    lsrs r4, r4, #2
    beq 13f
12: @ four f at a time
    vldmia r5!, {s0-s3}
    .if \P > 1
    vldmia r6!, {s4-s7}
    .endif
    .if \P > 2
    vldmia r7!, {s8-s9}
    vldmia r7!, {s12-s13}
    .endif
    vldmia r8!, {s14-s17}
    DOTCOL \P, s20, s24, s28
    vldmia r9!, {s14-s17}
    DOTCOL \P, s21, s25, s29
    vldmia r10!, {s14-s17}
    DOTCOL \P, s22, s26, s30
    vldmia r11!, {s14-s17}
    DOTCOL \P, s23, s27, s31
    subs r4, r4, #1
    bne 12b
13: @ the remaining n mod 4 values of f, one at a time
    ldr r4, [r0, #A_N]
    ands r4, r4, #3
    beq 15f
14:
    vldmia r5!, {s0}
    .if \P > 1
    vldmia r6!, {s4}
    .endif
    .if \P > 2
    vldmia r7!, {s8}
    .endif
    vldmia r8!, {s14}
    DOTCOL1 \P, s20, s24, s28
    vldmia r9!, {s14}
    DOTCOL1 \P, s21, s25, s29
    vldmia r10!, {s14}
    DOTCOL1 \P, s22, s26, s30
    vldmia r11!, {s14}
    DOTCOL1 \P, s23, s27, s31
    subs r4, r4, #1
    bne 14b
15:
    ldr r1, [r0, #A_K1]
    add r12, r12, #1
    cmp r12, r1
    ble 11b
    @ store the block
    ldr r1, [r0, #A_YS]
    ldr r2, [sp, #12]
    vstm r2, {s20-s23}
    .if \P > 1
    add r3, r2, r1
    vstm r3, {s24-s27}
    .endif
    .if \P > 2
    add r3, r3, r1
    vstm r3, {s28-s31}
    .endif
    add r2, r2, #16
    str r2, [sp, #12]
    ldr r3, [r0, #A_WS]
    ldr r2, [sp, #8]
    add r2, r2, r3, lsl #2          @ next 4 channel rows of w
    str r2, [sp, #8]
    ldr r1, [sp, #4]
    subs r1, r1, #1
    str r1, [sp, #4]
    bne 10b
    add sp, sp, #16
    vpop {s16-s31}
    pop {r4-r11, pc}
    .ltorg
    .size \name, . - \name
.endm

    DOT 1, odl_mk_dot_p1
    DOT 2, odl_mk_dot_p2
    DOT 3, odl_mk_dot_p3
    DOT 1, odl_mk_dotd_p1           @ the same code for dense layers, so profiles tell conv and dense apart

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_gemv_uU(args), U = 12, 4, 2, 1: dense forward for U consecutive units.
 *   y[u] = act(sum_{q < n} a[q] * w[q * ws + 4 u] + b[u])      (u < U; the sum runs over q from 0)
 *   Accumulators s20.., weights s0.., x quad s12-s15, temporaries s16/s17.
 * odl_mk_gerv_uU(args): dense weight gradient (no sum): y[q * ys + 4 u] += a[q] * w[u], q < n.
 * ----------------------------------------------------------------------------------------------------
 */
/* acc (s20 + u) += x * s(u), u < U */
.macro GEMV_STEP U, x
    .if \U == 12
    MAC2T s20, \x, s0, s21, \x, s1
    MAC2T s22, \x, s2, s23, \x, s3
    MAC2T s24, \x, s4, s25, \x, s5
    MAC2T s26, \x, s6, s27, \x, s7
    MAC2T s28, \x, s8, s29, \x, s9
    MAC2T s30, \x, s10, s31, \x, s11
    .elseif \U == 4
    MAC2T s20, \x, s0, s21, \x, s1
    MAC2T s22, \x, s2, s23, \x, s3
    .elseif \U == 2
    MAC2T s20, \x, s0, s21, \x, s1
    .else
    vmul.f32 s16, \x, s0
    vadd.f32 s20, s20, s16
    .endif
.endm
.macro LDW U
    .if \U == 12
    vldm r1, {s0-s11}
    .elseif \U == 4
    vldm r1, {s0-s3}
    .elseif \U == 2
    vldm r1, {s0-s1}
    .else
    vldm r1, {s0}
    .endif
    add r1, r1, r2
.endm
.macro GEMV U
    .global odl_mk_gemv_u\U
    .type odl_mk_gemv_u\U, %function
    .thumb_func
odl_mk_gemv_u\U:
    push {r4-r7, lr}
    vpush {s16-s31}
    mov r12, r0
    ldr r0, =odl_mk_zero
    .if \U == 12
    vldm r0, {s20-s31}
    .elseif \U == 4
    vldm r0, {s20-s23}
    .elseif \U == 2
    vldm r0, {s20-s21}
    .else
    vldm r0, {s20}
    .endif
    ldr r0, [r12, #A_A]
    ldr r1, [r12, #A_W]
    ldr r2, [r12, #A_WS]
    ldr r3, [r12, #A_N]
    lsrs r3, r3, #2
    beq 12f
11:
    vldmia r0!, {s12-s15}
    LDW \U
    GEMV_STEP \U, s12
    LDW \U
    GEMV_STEP \U, s13
    LDW \U
    GEMV_STEP \U, s14
    LDW \U
    GEMV_STEP \U, s15
    subs r3, r3, #1
    bne 11b
12:
    ldr r3, [r12, #A_N]
    ands r3, r3, #3
    beq 14f
13:
    vldmia r0!, {s12}
    LDW \U
    GEMV_STEP \U, s12
    subs r3, r3, #1
    bne 13b
14:
    ldr r0, [r12, #A_B]
    cmp r0, #0
    beq 15f
    .if \U == 12
    vldm r0, {s0-s11}
    .elseif \U == 4
    vldm r0, {s0-s3}
    .elseif \U == 2
    vldm r0, {s0-s1}
    .else
    vldm r0, {s0}
    .endif
    vadd.f32 s20, s20, s0
    .if \U > 1
    vadd.f32 s21, s21, s1
    .endif
    .if \U > 2
    vadd.f32 s22, s22, s2
    vadd.f32 s23, s23, s3
    .endif
    .if \U > 4
    vadd.f32 s24, s24, s4
    vadd.f32 s25, s25, s5
    vadd.f32 s26, s26, s6
    vadd.f32 s27, s27, s7
    vadd.f32 s28, s28, s8
    vadd.f32 s29, s29, s9
    vadd.f32 s30, s30, s10
    vadd.f32 s31, s31, s11
    .endif
15:
    ldr r0, [r12, #A_Y]
    ldr r1, [r12, #A_RELU]
    cmp r1, #0
    beq 16f
    .if \U == 1
    vmov r4, s20
    bic r4, r4, r4, asr #31
    str r4, [r0]
    .elseif \U == 2
    vmov r4, r5, s20, s21
    bic r4, r4, r4, asr #31
    bic r5, r5, r5, asr #31
    stm r0, {r4-r5}
    .else
    STR4_RELU s20, s21, s22, s23, r0
    .endif
    .if \U == 12
    STR4_RELU s24, s25, s26, s27, r0
    STR4_RELU s28, s29, s30, s31, r0
    .endif
    b 17f
16:
    .if \U == 12
    vstm r0, {s20-s31}
    .elseif \U == 4
    vstm r0, {s20-s23}
    .elseif \U == 2
    vstm r0, {s20-s21}
    .else
    vstm r0, {s20}
    .endif
17:
    vpop {s16-s31}
    pop {r4-r7, pc}
    .ltorg
    .size odl_mk_gemv_u\U, . - odl_mk_gemv_u\U
.endm

    GEMV 12
    GEMV 4
    GEMV 2
    GEMV 1

/* gradient row (s0..) += x * dy (s20..) */
.macro GERV_STEP U, x
    .if \U == 12
    MAC2T s0, \x, s20, s1, \x, s21
    MAC2T s2, \x, s22, s3, \x, s23
    MAC2T s4, \x, s24, s5, \x, s25
    MAC2T s6, \x, s26, s7, \x, s27
    MAC2T s8, \x, s28, s9, \x, s29
    MAC2T s10, \x, s30, s11, \x, s31
    .elseif \U == 4
    MAC2T s0, \x, s20, s1, \x, s21
    MAC2T s2, \x, s22, s3, \x, s23
    .elseif \U == 2
    MAC2T s0, \x, s20, s1, \x, s21
    .else
    vmul.f32 s16, \x, s20
    vadd.f32 s0, s0, s16
    .endif
.endm
.macro GROW U, op
    .if \U == 12
    \op r1, {s0-s11}
    .elseif \U == 4
    \op r1, {s0-s3}
    .elseif \U == 2
    \op r1, {s0-s1}
    .else
    \op r1, {s0}
    .endif
.endm
.macro GERV U
    .global odl_mk_gerv_u\U
    .type odl_mk_gerv_u\U, %function
    .thumb_func
odl_mk_gerv_u\U:
    push {r4-r7, lr}
    vpush {s16-s31}
    mov r12, r0
    ldr r0, [r12, #A_W]             @ dy
    .if \U == 12
    vldm r0, {s20-s31}
    .elseif \U == 4
    vldm r0, {s20-s23}
    .elseif \U == 2
    vldm r0, {s20-s21}
    .else
    vldm r0, {s20}
    .endif
    ldr r0, [r12, #A_A]             @ x
    ldr r1, [r12, #A_Y]             @ gradient row
    ldr r2, [r12, #A_YS]
    ldr r3, [r12, #A_N]
    tst r3, #1
    beq 11f
    vldmia r0!, {s12}
    GROW \U, vldm
    GERV_STEP \U, s12
    GROW \U, vstm
    add r1, r1, r2
    subs r3, r3, #1
    beq 12f
11:
    vldmia r0!, {s12-s13}
    GROW \U, vldm
    GERV_STEP \U, s12
    GROW \U, vstm
    add r1, r1, r2
    GROW \U, vldm
    GERV_STEP \U, s13
    GROW \U, vstm
    add r1, r1, r2
    subs r3, r3, #2
    bne 11b
12:
    vpop {s16-s31}
    pop {r4-r7, pc}
    .size odl_mk_gerv_u\U, . - odl_mk_gerv_u\U
.endm

    GERV 12
    GERV 4
    GERV 2
    GERV 1

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_rowsum(args): pooling by rows.  For each of nb output rows (y advances ys, a advances ts):
 *   y[j] = (a[j] + a[as + j] + ... + a[(k0 - 1) as + j]) * scale,   j < n, summed from row 0 in order,
 *   or with relu != 0, y[j] += that (a bias gradient).
 *   (average pooling: k0 = pool rows; global average: nb = 1, k0 = all rows)
 * ----------------------------------------------------------------------------------------------------
 */
.macro ROWSUM name
    .global \name
    .type \name, %function
    .thumb_func
\name:
    push {r4-r11, lr}
    vpush {s16-s31}
    mov r12, r0
    vldr s8, [r12, #A_SCALE]
    ldr r5, [r12, #A_A]             @ input row block
    ldr r6, [r12, #A_Y]             @ output row
    ldr r7, [r12, #A_AS]
    ldr lr, [r12, #A_NB]
10: @ output row
    mov r0, r5                      @ column pointer into input row 0
    mov r1, r6
    ldr r2, [r12, #A_N]
    lsrs r2, r2, #3
    beq 13f
11: @ 8 columns
    vldm r0, {s16-s23}
    add r3, r0, r7
    ldr r4, [r12, #A_K0]
    subs r4, r4, #1
    beq 121f
12:
    vldm r3, {s0-s7}
    add r3, r3, r7
    vadd.f32 s16, s16, s0
    vadd.f32 s17, s17, s1
    vadd.f32 s18, s18, s2
    vadd.f32 s19, s19, s3
    vadd.f32 s20, s20, s4
    vadd.f32 s21, s21, s5
    vadd.f32 s22, s22, s6
    vadd.f32 s23, s23, s7
    subs r4, r4, #1
    bne 12b
121:
    vmul.f32 s16, s16, s8
    vmul.f32 s17, s17, s8
    vmul.f32 s18, s18, s8
    vmul.f32 s19, s19, s8
    vmul.f32 s20, s20, s8
    vmul.f32 s21, s21, s8
    vmul.f32 s22, s22, s8
    vmul.f32 s23, s23, s8
    ldr r4, [r12, #A_RELU]          @ accumulate: y += sum * scale
    cbz r4, 122f
    vldm r1, {s0-s7}
    vadd.f32 s16, s0, s16
    vadd.f32 s17, s1, s17
    vadd.f32 s18, s2, s18
    vadd.f32 s19, s3, s19
    vadd.f32 s20, s4, s20
    vadd.f32 s21, s5, s21
    vadd.f32 s22, s6, s22
    vadd.f32 s23, s7, s23
122:
    vstmia r1!, {s16-s23}
    add r0, r0, #32
    subs r2, r2, #1
    bne 11b
13: @ the remaining columns one at a time
    ldr r2, [r12, #A_N]
    ands r2, r2, #7
    beq 16f
14:
    vldr s16, [r0]
    add r3, r0, r7
    ldr r4, [r12, #A_K0]
    subs r4, r4, #1
    beq 151f
15:
    vldr s0, [r3]
    add r3, r3, r7
    vadd.f32 s16, s16, s0
    subs r4, r4, #1
    bne 15b
151:
    vmul.f32 s16, s16, s8
    ldr r4, [r12, #A_RELU]
    cbz r4, 152f
    vldr s0, [r1]
    vadd.f32 s16, s0, s16
152:
    vstmia r1!, {s16}
    add r0, r0, #4
    subs r2, r2, #1
    bne 14b
16:
    ldr r0, [r12, #A_TS]
    add r5, r5, r0
    ldr r0, [r12, #A_YS]
    add r6, r6, r0
    subs lr, lr, #1
    bne 10b
    vpop {s16-s31}
    pop {r4-r11, pc}
    .size \name, . - \name
.endm

    ROWSUM odl_mk_rowsum
    ROWSUM odl_mk_biasgrad          @ the same code for conv bias gradients (profiles)

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_rowspread(args): the backward of average pooling with pool = stride (and of global average
 * pooling): for each of nb input rows m (a advances as, y advances ts), t = a[j] * scale is written to
 * the k0 rows y[q * ys + j], q < k0, j < n.
 * ----------------------------------------------------------------------------------------------------
 */
    .global odl_mk_rowspread
    .type odl_mk_rowspread, %function
    .thumb_func
odl_mk_rowspread:
    push {r4-r11, lr}
    vpush {s16-s31}
    mov r12, r0
    vldr s8, [r12, #A_SCALE]
    ldr r5, [r12, #A_A]
    ldr r6, [r12, #A_Y]
    ldr r7, [r12, #A_YS]
    ldr lr, [r12, #A_NB]
10:
    mov r0, r5
    mov r1, r6
    ldr r2, [r12, #A_N]
    lsrs r2, r2, #3
    beq 13f
11:
    vldmia r0!, {s16-s23}
    vmul.f32 s16, s16, s8
    vmul.f32 s17, s17, s8
    vmul.f32 s18, s18, s8
    vmul.f32 s19, s19, s8
    vmul.f32 s20, s20, s8
    vmul.f32 s21, s21, s8
    vmul.f32 s22, s22, s8
    vmul.f32 s23, s23, s8
    mov r3, r1
    ldr r4, [r12, #A_K0]
12:
    vstm r3, {s16-s23}
    add r3, r3, r7
    subs r4, r4, #1
    bne 12b
    add r1, r1, #32
    subs r2, r2, #1
    bne 11b
13:
    ldr r2, [r12, #A_N]
    ands r2, r2, #7
    beq 16f
14:
    vldmia r0!, {s16}
    vmul.f32 s16, s16, s8
    mov r3, r1
    ldr r4, [r12, #A_K0]
15:
    vstr s16, [r3]
    add r3, r3, r7
    subs r4, r4, #1
    bne 15b
    add r1, r1, #4
    subs r2, r2, #1
    bne 14b
16:
    ldr r0, [r12, #A_AS]
    add r5, r5, r0
    ldr r0, [r12, #A_TS]
    add r6, r6, r0
    subs lr, lr, #1
    bne 10b
    vpop {s16-s31}
    pop {r4-r11, pc}
    .size odl_mk_rowspread, . - odl_mk_rowspread

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_sgd(args): the SGD step of one parameter array when the batch size is a power of two, so that
 * acc / n == acc * (1 / n) exactly:  t = a[i] * scale;  t = t * lr;  y[i] = y[i] - t;  a[i] = +0   (i < n)
 * (the accumulator is zeroed for the next batch while it is read).
 * ----------------------------------------------------------------------------------------------------
 */
    .global odl_mk_sgd
    .type odl_mk_sgd, %function
    .thumb_func
odl_mk_sgd:
    push {r4-r11, lr}
    vpush {s16-s17}
    vldr s16, [r0, #A_SCALE]
    vldr s17, [r0, #A_LR]
    ldr r1, [r0, #A_A]
    ldr r2, [r0, #A_Y]
    ldr r3, [r0, #A_N]
    movs r4, #0
    movs r5, #0
    movs r6, #0
    movs r7, #0
    movs r8, #0
    movs r9, #0
    movs r10, #0
    movs r11, #0
    lsrs r12, r3, #3
    beq 12f
11:
    vldm r1, {s0-s7}
    stmia r1!, {r4-r11}
    vmul.f32 s0, s0, s16
    vmul.f32 s1, s1, s16
    vmul.f32 s2, s2, s16
    vmul.f32 s3, s3, s16
    vmul.f32 s4, s4, s16
    vmul.f32 s5, s5, s16
    vmul.f32 s6, s6, s16
    vmul.f32 s7, s7, s16
    vmul.f32 s0, s0, s17
    vmul.f32 s1, s1, s17
    vmul.f32 s2, s2, s17
    vmul.f32 s3, s3, s17
    vmul.f32 s4, s4, s17
    vmul.f32 s5, s5, s17
    vmul.f32 s6, s6, s17
    vmul.f32 s7, s7, s17
    vldm r2, {s8-s15}
    vsub.f32 s8, s8, s0
    vsub.f32 s9, s9, s1
    vsub.f32 s10, s10, s2
    vsub.f32 s11, s11, s3
    vsub.f32 s12, s12, s4
    vsub.f32 s13, s13, s5
    vsub.f32 s14, s14, s6
    vsub.f32 s15, s15, s7
    vstmia r2!, {s8-s15}
    subs r12, r12, #1
    bne 11b
12:
    ands r3, r3, #7
    beq 14f
13:
    vldr s0, [r1]
    str r4, [r1], #4
    vmul.f32 s0, s0, s16
    vmul.f32 s0, s0, s17
    vldr s8, [r2]
    vsub.f32 s8, s8, s0
    vstmia r2!, {s8}
    subs r3, r3, #1
    bne 13b
14:
    vpop {s16-s17}
    pop {r4-r11, pc}
    .size odl_mk_sgd, . - odl_mk_sgd

/*
 * ----------------------------------------------------------------------------------------------------
 * odl_mk_relu_mask(args): ReLU backward in place on the bits: w[i] (dy) = 0 unless y[i] > 0, i.e. unless
 * bits(y[i]) - 1 < 0x7F800000 (a positive number up to +inf; not 0, negative or NaN).  a = y, y = dy.
 * ----------------------------------------------------------------------------------------------------
 */
.macro RMASK ry, rd
    sub r12, \ry, #1
    cmp r12, #0x7F800000
    it hs
    movhs \rd, #0
.endm
    .global odl_mk_relu_mask
    .type odl_mk_relu_mask, %function
    .thumb_func
odl_mk_relu_mask:
    push {r4-r11, lr}
    ldr r1, [r0, #A_A]
    ldr r2, [r0, #A_Y]
    ldr r3, [r0, #A_N]
    lsrs lr, r3, #2
    beq 12f
11:
    ldmia r1!, {r4-r7}
    ldm r2, {r8-r11}
    RMASK r4, r8
    RMASK r5, r9
    RMASK r6, r10
    RMASK r7, r11
    stmia r2!, {r8-r11}
    subs lr, lr, #1
    bne 11b
12:
    ands r3, r3, #3
    beq 14f
13:
    ldr r4, [r1], #4
    ldr r8, [r2]
    RMASK r4, r8
    str r8, [r2], #4
    subs r3, r3, #1
    bne 13b
14:
    pop {r4-r11, pc}
    .size odl_mk_relu_mask, . - odl_mk_relu_mask

/*
 * ----------------------------------------------------------------------------------------------------
 * The grouped dense head (ODL_HEAD_GROUP = 4 windows at once, model.h): window s's vectors are slots
 * a + s as, w + s ws, y + s ys.  U = 1..5 units per block, nb blocks (each advances 4 U bytes).
 * odl_mk_gemm4_uU: dense forward of 4 windows:
 *   y[s ys + 4 u] = act(sum_{q < n} a[s as + 4 q] * w[q ws + 4 u] + b[u])  (the sum from q = 0, as gemv)
 *   so each weight is loaded once for 4 windows.  Accumulators: window s, unit u at s(12 + U s + u);
 *   weights s0-s4, x of the 4 windows s5-s8, temporaries s9/s10.
 * odl_mk_ger4_uU: dense weight gradient of 4 windows: for q < n, for s = 0..3 in order:
 *   y[q ys + 4 u] += a[s as + 4 q] * w[s ws + 4 u]
 *   (a gradient row is loaded and stored once for 4 windows; each element gets the windows' products
 *   added one after the other in window order, as 4 calls of gerv would).  dy of window s, unit u at
 *   s(12 + U s + u); gradient row s0-s4; x s5-s8; temporaries s9/s10.
 * ----------------------------------------------------------------------------------------------------
 */
/* acc0 += x0 * w0, acc1 += x1 * w1 (register numbers) */
.macro MACN acc0, x0, w0, acc1, x1, w1
    vmul.f32 s9, s\x0, s\w0
    vmul.f32 s10, s\x1, s\w1
    vadd.f32 s\acc0, s\acc0, s9
    vadd.f32 s\acc1, s\acc1, s10
.endm
.macro VLDMR base, lo, hi
    .if \lo == \hi
    vldm \base, {s\lo}
    .else
    vldm \base, {s\lo-s\hi}
    .endif
.endm
.macro VSTMR base, lo, hi
    .if \lo == \hi
    vstm \base, {s\lo}
    .else
    vstm \base, {s\lo-s\hi}
    .endif
.endm
.macro VADDN d, a, b
    vadd.f32 s\d, s\a, s\b
.endm
.macro VMOVRS r, sn
    vmov \r, s\sn
.endm
/* the 4 windows' x (r4-r7, post-increment) to s5-s8 */
.macro LDX4
    vldmia r4!, {s5}
    vldmia r5!, {s6}
    vldmia r6!, {s7}
    vldmia r7!, {s8}
.endm
/* x pointers r4-r7 = a + s as (uses r0) */
.macro XPTRS
    ldr r4, [r12, #A_A]
    ldr r0, [r12, #A_AS]
    add r5, r4, r0
    add r6, r5, r0
    add r7, r6, r0
.endm
.macro GEMM4_STEP U
    .altmacro
    VLDMR r1, 0, %(\U - 1)
    add r1, r1, r2
    LDX4
    .set k, 0
    .rept 2 * \U
    MACN %(12 + k), %(5 + k / \U), %(k - (k / \U) * \U), %(13 + k), %(5 + (k + 1) / \U), %(k + 1 - ((k + 1) / \U) * \U)
    .set k, k + 2
    .endr
    .noaltmacro
.endm
.macro GER4_STEP U
    .altmacro
    VLDMR r1, 0, %(\U - 1)
    LDX4
    .set k, 0
    .rept 2 * \U
    MACN %(k - (k / \U) * \U), %(5 + k / \U), %(12 + k), %(k + 1 - ((k + 1) / \U) * \U), %(5 + (k + 1) / \U), %(13 + k)
    .set k, k + 2
    .endr
    VSTMR r1, 0, %(\U - 1)
    .noaltmacro
    add r1, r1, r2
.endm

.macro GEMM4 U
    .global odl_mk_gemm4_u\U
    .type odl_mk_gemm4_u\U, %function
    .thumb_func
odl_mk_gemm4_u\U:
    push {r4-r11, lr}
    vpush {s16-s31}
    mov r12, r0
    ldr r8, [r12, #A_NB]
    movs r9, #0                     @ byte offset of the unit block
10:
    ldr r0, =odl_mk_zero
    .altmacro
    VLDMR r0, 12, %(11 + 4 * \U)
    .noaltmacro
    XPTRS
    ldr r1, [r12, #A_W]
    add r1, r1, r9
    ldr r2, [r12, #A_WS]
    ldr r3, [r12, #A_N]
    lsrs r3, r3, #1
    beq 12f
11:
    GEMM4_STEP \U
    GEMM4_STEP \U
    subs r3, r3, #1
    bne 11b
12:
    ldr r3, [r12, #A_N]
    tst r3, #1
    beq 13f
    GEMM4_STEP \U
13:
    ldr r0, [r12, #A_B]
    cmp r0, #0
    beq 14f
    add r0, r0, r9
    .altmacro
    VLDMR r0, 0, %(\U - 1)
    .set k, 0
    .rept 4 * \U
    VADDN %(12 + k), %(12 + k), %(k - (k / \U) * \U)
    .set k, k + 1
    .endr
    .noaltmacro
14:
    ldr r0, [r12, #A_Y]
    add r0, r0, r9
    ldr r10, [r12, #A_YS]
    ldr r11, [r12, #A_RELU]
    cmp r11, #0
    beq 16f
    .altmacro
    .set s, 0
    .rept 4
    .set u, 0
    .rept \U
    VMOVRS lr, %(12 + \U * s + u)
    bic lr, lr, lr, asr #31
    str lr, [r0, #(4 * u)]
    .set u, u + 1
    .endr
    add r0, r0, r10
    .set s, s + 1
    .endr
    .noaltmacro
    b 17f
16:
    .altmacro
    .set s, 0
    .rept 4
    VSTMR r0, %(12 + \U * s), %(11 + \U * (s + 1))
    add r0, r0, r10
    .set s, s + 1
    .endr
    .noaltmacro
17:
    adds r9, r9, #(4 * \U)
    subs r8, r8, #1
    bne 10b
    vpop {s16-s31}
    pop {r4-r11, pc}
    .ltorg
    .size odl_mk_gemm4_u\U, . - odl_mk_gemm4_u\U
.endm

.macro GER4 U
    .global odl_mk_ger4_u\U
    .type odl_mk_ger4_u\U, %function
    .thumb_func
odl_mk_ger4_u\U:
    push {r4-r11, lr}
    vpush {s16-s31}
    mov r12, r0
    ldr r8, [r12, #A_NB]
    movs r9, #0                     @ byte offset of the unit block
10:
    ldr r0, [r12, #A_W]             @ dy of the 4 windows
    add r0, r0, r9
    ldr r2, [r12, #A_WS]
    .altmacro
    .set s, 0
    .rept 4
    VLDMR r0, %(12 + \U * s), %(11 + \U * (s + 1))
    add r0, r0, r2
    .set s, s + 1
    .endr
    .noaltmacro
    XPTRS
    ldr r1, [r12, #A_Y]
    add r1, r1, r9
    ldr r2, [r12, #A_YS]
    ldr r3, [r12, #A_N]
    lsrs r3, r3, #1
    beq 12f
11:
    GER4_STEP \U
    GER4_STEP \U
    subs r3, r3, #1
    bne 11b
12:
    ldr r3, [r12, #A_N]
    tst r3, #1
    beq 13f
    GER4_STEP \U
13:
    adds r9, r9, #(4 * \U)
    subs r8, r8, #1
    bne 10b
    vpop {s16-s31}
    pop {r4-r11, pc}
    .size odl_mk_ger4_u\U, . - odl_mk_ger4_u\U
.endm

    GEMM4 5
    GEMM4 4
    GEMM4 3
    GEMM4 2
    GEMM4 1
    GER4 5
    GER4 4
    GER4 3
    GER4 2
    GER4 1
