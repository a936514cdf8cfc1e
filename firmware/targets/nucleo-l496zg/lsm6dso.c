/*
 * The LSM6DSO accelerometer of the X-NUCLEO-IKS01A3 on I2C1 (address 0x6B).  Register map and values:
 * ST's lsm6dso-pid driver (lsm6dso_reg.h), summarised in ../shared/reference/firmware-targets.md §4.
 * Only the accelerometer is used; it is batched into the FIFO in continuous mode at its own ODR, and the
 * board reads the FIFO every few sample periods (l496_lsm_poll_us), one 7-byte word (tag + X, Y, Z) at a
 * time, as ST's examples do.
 */
#include "hw.h"

enum {
    FIFO_CTRL1 = 0x07, FIFO_CTRL2 = 0x08, FIFO_CTRL3 = 0x09, FIFO_CTRL4 = 0x0A, WHO_AM_I = 0x0F,
    CTRL1_XL = 0x10, CTRL3_C = 0x12, CTRL9_XL = 0x18, FIFO_STATUS1 = 0x3A, FIFO_DATA_OUT_TAG = 0x78,
};
#define CTRL3_SW_RESET 0x01u
#define CTRL3_IF_INC 0x04u
#define CTRL3_BDU 0x40u
#define CTRL9_I3C_DISABLE 0x02u
#define FIFO_MODE_BYPASS 0x00u
#define FIFO_MODE_CONTINUOUS 0x06u

static uint16_t left; /* FIFO words known to be there and not read yet */

static int rd(uint8_t reg, uint8_t *v, size_t n) { return l496_i2c_xfer(L496_LSM_ADDR, &reg, 1, v, n); }

static int wr(uint8_t reg, uint8_t v) {
    uint8_t b[2] = {reg, v};
    return l496_i2c_xfer(L496_LSM_ADDR, b, 2, 0, 0);
}

uint8_t l496_lsm_probe(void) {
    uint8_t who = 0, v = 0;
    if (l496_i2c_enable(1)) return 0;
    if (rd(WHO_AM_I, &who, 1) || who != L496_LSM_WHOAMI) goto absent;
    if (wr(CTRL3_C, CTRL3_SW_RESET)) goto absent; /* back to the reset state whatever ran before */
    uint32_t t0 = l496_now_us();
    do {
        if (rd(CTRL3_C, &v, 1)) goto absent;
    } while ((v & CTRL3_SW_RESET) && l496_now_us() - t0 < 50000u);
    if ((v & CTRL3_SW_RESET) || wr(CTRL3_C, CTRL3_BDU | CTRL3_IF_INC)) goto absent;
    if (rd(CTRL9_XL, &v, 1) || wr(CTRL9_XL, (uint8_t)(v | CTRL9_I3C_DISABLE))) goto absent; /* I2C only */
    if (wr(FIFO_CTRL4, FIFO_MODE_BYPASS) || wr(CTRL1_XL, 0)) goto absent;                  /* powered down */
    l496_i2c_enable(0);
    return who;
absent:
    l496_i2c_enable(0);
    return 0;
}

int l496_lsm_start(uint32_t odr_mhz, uint8_t fs_g) {
    int odr = l496_lsm_odr_code(odr_mhz), fs = l496_lsm_fs_code(fs_g);
    if (odr < 0 || fs < 0 || l496_i2c_enable(1)) return -1;
    left = 0;
    /* FIFO emptied (bypass), no watermark, accelerometer batched at its ODR, gyro/temperature/timestamp not
     * batched, continuous mode; then the accelerometer on: its first sample goes into the FIFO */
    if (wr(FIFO_CTRL4, FIFO_MODE_BYPASS) || wr(FIFO_CTRL1, 0) || wr(FIFO_CTRL2, 0) || wr(FIFO_CTRL3, (uint8_t)odr) ||
        wr(FIFO_CTRL4, FIFO_MODE_CONTINUOUS) || wr(CTRL1_XL, (uint8_t)((odr << 4) | (fs << 2)))) {
        l496_i2c_enable(0);
        return -1;
    }
    return 0;
}

void l496_lsm_stop(void) {
    (void)wr(CTRL1_XL, 0);
    (void)wr(FIFO_CTRL4, FIFO_MODE_BYPASS);
    left = 0;
    l496_i2c_enable(0);
}

int l496_lsm_read(int16_t (*xyz)[3], size_t max, l496_lsm_status_t *st) {
    st->fresh = 0, st->overrun = 0, st->level = 0, st->more = 0;
    if (!left) {
        uint8_t s[2];
        if (rd(FIFO_STATUS1, s, 2)) return -1;
        st->fresh = 1;
        st->level = l496_lsm_fifo_level(s[0], s[1], &st->overrun);
        left = st->level;
    }
    size_t n = 0;
    while (n < max && left) {
        uint8_t w[7];
        if (rd(FIFO_DATA_OUT_TAG, w, 7)) {
            left = 0;
            return -1;
        }
        left--;
        if (l496_lsm_fifo_word(w, xyz[n])) n++; /* other tags (none are batched) are skipped */
    }
    st->more = left != 0;
    return (int)n;
}
