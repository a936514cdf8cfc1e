/*
 * The board interface: everything the portable core needs from a target.  Implementations:
 *   targets/qemu-mps2-an386/board_qemu.c  (QEMU, the virtual bench's board)
 *   targets/nucleo-l496zg/board_l496.c    (the real NUCLEO-L496ZG + X-NUCLEO-IKS01A3)
 *   host/board_host.c                     (native build for the host-side tests)
 * The core calls these from its main loop only (never from interrupts).
 */
#ifndef ODL_BOARD_H
#define ODL_BOARD_H

#include <stddef.h>
#include <stdint.h>

/* Static facts of the target. */
typedef struct {
    const char *board; /* INFO.board, e.g. "NUCLEO-L496ZG" */
    const char *mcu;   /* INFO.mcu */
    const char *build; /* INFO.build: target / build name */
    uint16_t dev_id, rev_id;
    uint32_t flash_total;
    uint8_t emulated; /* HELLO_RSP/INFO flags bit 0 */
} board_info_t;

void board_init(void);
const board_info_t *board_get_info(void);
/* Reset cause of this boot: 0 power-on/pin/brown-out, 1 software reset (RESET request), 2 watchdog,
 * 3 fault (HardFault handler reset). */
uint8_t board_reset_cause(void);
/* Software reset; never returns.  `cause` is what the next boot reports. */
void board_reset(uint8_t cause) __attribute__((noreturn));
/* Text the core logs (level 3) right after BOOT, e.g. where a fault hit before this reset; "" if none. */
const char *board_boot_message(void);

/* --- the protocol link (UART; bytes in any chunking) -------------------------------------------- */
size_t board_link_read(uint8_t *buf, size_t max);       /* non-blocking; bytes received so far */
size_t board_link_write(const uint8_t *buf, size_t n);  /* non-blocking; bytes accepted */
size_t board_link_tx_free(void);                        /* bytes the TX side accepts right now */

/* --- time ---------------------------------------------------------------------------------------- */
uint64_t board_ticks(void);  /* 1 MHz, since boot */
uint64_t board_cycles(void); /* CPU cycles since boot (DWT CYCCNT extended; modelled cycles under QEMU) */
uint32_t board_sysclk(void);
/* Switch SYSCLK to `hz` (whole MHz, 4..80 MHz); returns the clock actually set, 0 if impossible. */
uint32_t board_set_sysclk(uint32_t hz);

/* --- batch marker (Arduino D7) ------------------------------------------------------------------- */
void board_marker_pulse(uint32_t pulse_us); /* rising edge now, low again after pulse_us */

/* --- power / scheduling ---------------------------------------------------------------------- */
/* Called whenever the core has nothing to do: sleep (WFI) until an interrupt. */
void board_idle(void);
/* Called between steps of long work (training, evaluation): service what must not wait. */
void board_poll(void);
/* The core tells the board when a round or evaluation starts/stops running (run mode vs idle). */
void board_job_state(int running);

/* --- accelerometer (LSM6DSO) ----------------------------------------------------------------- */
uint8_t board_sensor_whoami(void);                    /* 0 when no sensor answers */
int board_sensor_config(uint32_t odr_mhz, uint8_t fs_g); /* 0 ok */
int board_sensor_start(void);                         /* 0 ok; samples from now on */
void board_sensor_stop(void);
/* Up to `max` samples (x, y, z counts) in arrival order; *index = index of the first one since
 * board_sensor_start(), *t0 = tick of sample 0.  Returns the number of samples copied. */
size_t board_sensor_read(int16_t (*xyz)[3], size_t max, uint32_t *index, uint64_t *t0);

/* --- the simulated person (virtual bench only) ------------------------------------------------ */
/* SIM_SET_ACTIVITY / SIM_GET_ACTIVITY: a board whose sensor is simulated answers them (the QEMU board
 * forwards them to the bench); returns the ACTIVITY payload length, or -1 (the core then answers
 * ERROR UNSUPPORTED, as real firmware does).  On error, returns -2 with a message in out. */
int board_sim_request(uint8_t type, const uint8_t *payload, uint16_t len, uint8_t *out, uint16_t cap);

#endif
