/* Cortex-M4 core registers shared by the targets (ARMv7-M; addresses from CMSIS core_cm4.h). */
#ifndef ODL_CM4_H
#define ODL_CM4_H

#include <stdint.h>

#ifdef L496_HOST
/* Host tests of the NUCLEO board (-DL496_HOST, host/l496_fake.c): the core's registers (DWT, DEMCR, DBGMCU)
 * are variables of the fake chip, and PRIMASK, the NVIC and WFI act on its interrupt model. */
volatile uint32_t *l496_fake_core_reg(uintptr_t addr);
void l496_fake_irq_enable(unsigned irq);
uint32_t l496_fake_primask(int set, uint32_t value); /* the old PRIMASK; set: PRIMASK = value */
void l496_fake_wfi(void);
#define REG32(a) (*l496_fake_core_reg((uintptr_t)(a)))
#else
#define REG32(a) (*(volatile uint32_t *)(a))
#endif
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_CFSR REG32(0xE000ED28u)
#define SCB_HFSR REG32(0xE000ED2Cu)
#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_IPR8(n) (*(volatile uint8_t *)(0xE000E400u + (n)))
#define DEMCR REG32(0xE000EDFCu)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)

#ifdef L496_HOST
static inline void cm4_irq_enable(unsigned irq) { l496_fake_irq_enable(irq); }
static inline void cm4_disable_irq(void) { (void)l496_fake_primask(1, 1); }
static inline void cm4_enable_irq(void) { (void)l496_fake_primask(1, 0); }
static inline void cm4_wfi(void) { l496_fake_wfi(); }
static inline uint32_t cm4_irq_save(void) { return l496_fake_primask(1, 1); }
static inline void cm4_irq_restore(uint32_t p) { (void)l496_fake_primask(1, p); }
static inline void cm4_dmb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#else
static inline void cm4_enable_fpu(void) {
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11 full access */
    __asm__ volatile("dsb\n isb" ::: "memory");
}
static inline void cm4_irq_enable(unsigned irq) { NVIC_ISER(irq / 32u) = 1u << (irq % 32u); }
static inline void cm4_disable_irq(void) { __asm__ volatile("cpsid i" ::: "memory"); }
static inline void cm4_enable_irq(void) { __asm__ volatile("cpsie i" ::: "memory"); }
static inline void cm4_wfi(void) { __asm__ volatile("dsb\n wfi" ::: "memory"); }
/* PRIMASK saved and set (interrupts masked) / put back */
static inline uint32_t cm4_irq_save(void) {
    uint32_t p;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(p)::"memory");
    return p;
}
static inline void cm4_irq_restore(uint32_t p) { __asm__ volatile("msr primask, %0" ::"r"(p) : "memory"); }
static inline void cm4_dmb(void) { __asm__ volatile("dmb" ::: "memory"); }
__attribute__((noreturn)) static inline void cm4_system_reset(void) {
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}
#endif

/* Reset-surviving record (in .noinit): why the last reset happened and where a fault hit. */
typedef struct {
    uint32_t magic;
    uint32_t cause;
    uint32_t pc, lr, cfsr, hfsr;
} cm4_noinit_t;
#define CM4_NOINIT_MAGIC 0x0D1CA5E5u
extern cm4_noinit_t cm4_noinit;
/* fault.c */
uint8_t cm4_take_reset_cause(char *msg, unsigned cap);
void cm4_reset_with_cause(uint8_t cause) __attribute__((noreturn));

#endif
