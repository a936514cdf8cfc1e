/*
 * STM32L496ZG registers used by the NUCLEO-L496ZG board support, as register-block structs so that the
 * register-level code can run against a fake register file on the host (host/l496_fake.c).
 *
 * Where the facts come from (nothing here is copied code; only addresses, offsets and bit positions):
 *   [CMSIS]  ST's CMSIS device header stm32l496xx.h (cmsis_device_l4; read in the micropython/stm32lib
 *            copy): peripheral base addresses, register offsets (the *_TypeDef structs) and the bit
 *            definitions of RCC_CR/CFGR/PLLCFGR/BDCR/CSR, PWR_CR1/CR2/SR2, I2C_CR1/CR2/TIMINGR/ISR/ICR,
 *            the IRQ numbers (IRQn_Type) and the DMA channel bases.
 *   [REF]    ../shared/reference/firmware-targets.md (FLASH_ACR, GPIO, RCC enable bits, LPUART, TIM2, DWT).
 *   [CUBEMX] CubeMX-generated HAL_UART_MspInit of STM32L4 projects: LPUART1_RX = DMA2 channel 7 and
 *            LPUART1_TX = DMA2 channel 6, both request 4 (DMA2_CSELR).
 *   [ARMv7M] register layout shared by every STM32 DMA v1 / USART v2 / general-purpose timer (DMA CCR,
 *            USART CR1/CR3/ISR/ICR, TIM CR1/DIER/SR/EGR bits): the same bit positions in every ST
 *            reference manual of the family; not re-read for this file [unverified against RM0351].
 */
#ifndef ODL_L496_REGS_H
#define ODL_L496_REGS_H

#include <stdint.h>

#define L496_REG volatile uint32_t

/* ---- register blocks ([CMSIS] *_TypeDef) --------------------------------------------------------- */
typedef struct {
    L496_REG CR, ICSCR, CFGR, PLLCFGR, PLLSAI1CFGR, PLLSAI2CFGR, CIER, CIFR, CICR, RES0;
    L496_REG AHB1RSTR, AHB2RSTR, AHB3RSTR, RES1, APB1RSTR1, APB1RSTR2, APB2RSTR, RES2;
    L496_REG AHB1ENR, AHB2ENR, AHB3ENR, RES3, APB1ENR1, APB1ENR2, APB2ENR, RES4;
    L496_REG AHB1SMENR, AHB2SMENR, AHB3SMENR, RES5, APB1SMENR1, APB1SMENR2, APB2SMENR, RES6;
    L496_REG CCIPR, RES7, BDCR, CSR, CRRCR, CCIPR2;
} l496_rcc_t; /* 0x4002_1000; CCIPR at 0x88, BDCR 0x90, CSR 0x94 */

typedef struct {
    L496_REG CR1, CR2, CR3, CR4, SR1, SR2, SCR;
} l496_pwr_t; /* 0x4000_7000 */

typedef struct {
    L496_REG ACR, PDKEYR, KEYR, OPTKEYR, SR, CR;
} l496_flash_t; /* 0x4002_2000 */

typedef struct {
    L496_REG MODER, OTYPER, OSPEEDR, PUPDR, IDR, ODR, BSRR, LCKR, AFR[2], BRR;
} l496_gpio_t;

typedef struct {
    L496_REG CR1, CR2, SMCR, DIER, SR, EGR, CCMR1, CCMR2, CCER, CNT, PSC, ARR, RCR, CCR1, CCR2, CCR3, CCR4;
} l496_tim_t; /* TIM2 0x4000_0000 */

typedef struct {
    L496_REG CR1, CR2, CR3, BRR, GTPR, RTOR, RQR, ISR, ICR, RDR, TDR;
} l496_usart_t; /* LPUART1 0x4000_8000 (RDR/TDR are 16-bit registers in 32-bit slots) */

typedef struct {
    L496_REG CR1, CR2, OAR1, OAR2, TIMINGR, TIMEOUTR, ISR, ICR, PECR, RXDR, TXDR;
} l496_i2c_t; /* I2C1 0x4000_5400 */

typedef struct {
    L496_REG CCR, CNDTR, CPAR, CMAR, RES;
} l496_dma_ch_t;

typedef struct {
    L496_REG ISR, IFCR;
    l496_dma_ch_t CH[7]; /* channel n at 0x08 + 0x14 * (n - 1) */
    L496_REG RES[5];
    L496_REG CSELR; /* 0xA8 */
} l496_dma_t; /* DMA2 0x4002_0400 */

/* ---- addresses ([CMSIS] Peripheral_memory_map) ------------------------------------------------------ */
#define L496_TIM2_BASE 0x40000000u
#define L496_I2C1_BASE 0x40005400u
#define L496_PWR_BASE 0x40007000u
#define L496_LPUART1_BASE 0x40008000u
#define L496_DMA2_BASE 0x40020400u
#define L496_RCC_BASE 0x40021000u
#define L496_FLASH_BASE 0x40022000u
#define L496_GPIOB_BASE 0x48000400u
#define L496_GPIOF_BASE 0x48001400u
#define L496_GPIOG_BASE 0x48001800u
#define L496_DBGMCU_IDCODE 0xE0042000u /* DEV_ID [11:0] = 0x461, REV_ID [31:16] */
#define L496_FLASHSIZE_ADDR 0x1FFF75E0u /* 16-bit, KiB */

/* IRQ numbers ([CMSIS] IRQn_Type) */
#define L496_IRQ_TIM2 28
#define L496_IRQ_DMA2_CH6 68
#define L496_IRQ_DMA2_CH7 69
#define L496_IRQ_LPUART1 70
#define L496_N_IRQ 91 /* 0..90 (DMA2D); 16 + 91 = 107 vectors */

/* ---- bits ---------------------------------------------------------------------------------------- */
/* RCC_CR [CMSIS] */
#define RCC_CR_MSION (1u << 0)
#define RCC_CR_MSIRDY (1u << 1)
#define RCC_CR_MSIPLLEN (1u << 2)
#define RCC_CR_MSIRGSEL (1u << 3)
#define RCC_CR_MSIRANGE_POS 4u
#define RCC_CR_MSIRANGE_MSK (0xFu << 4)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
/* RCC_CFGR [CMSIS] */
#define RCC_CFGR_SW_MSK 3u
#define RCC_CFGR_SW_MSI 0u
#define RCC_CFGR_SW_PLL 3u
#define RCC_CFGR_SWS_POS 2u
#define RCC_CFGR_SWS_MSK (3u << 2)
#define RCC_CFGR_HPRE_POS 4u
#define RCC_CFGR_HPRE_MSK (0xFu << 4)
#define RCC_CFGR_PPRE1_MSK (7u << 8)
#define RCC_CFGR_PPRE2_MSK (7u << 11)
/* RCC_PLLCFGR [CMSIS]: PLLSRC [1:0] (01 MSI), PLLM [6:4] = M-1, PLLN [14:8], PLLREN 24, PLLR [26:25] = R/2-1 */
#define RCC_PLLCFGR_SRC_MSI 1u
#define RCC_PLLCFGR_M_POS 4u
#define RCC_PLLCFGR_N_POS 8u
#define RCC_PLLCFGR_REN (1u << 24)
#define RCC_PLLCFGR_R_POS 25u
/* enable registers [REF 2.5], [CMSIS] (same positions as the *RSTR registers) */
#define RCC_AHB1ENR_DMA2EN (1u << 1)
#define RCC_AHB2ENR_GPIOBEN (1u << 1)
#define RCC_AHB2ENR_GPIOFEN (1u << 5)
#define RCC_AHB2ENR_GPIOGEN (1u << 6)
#define RCC_APB1ENR1_TIM2EN (1u << 0)
#define RCC_APB1ENR1_I2C1EN (1u << 21)
#define RCC_APB1ENR1_PWREN (1u << 28)
#define RCC_APB1ENR2_LPUART1EN (1u << 0)
/* RCC_CCIPR [REF 2.5]: LPUART1SEL [11:10], I2C1SEL [13:12]; 00 = PCLK1 (reset) */
#define RCC_CCIPR_LPUART1SEL_MSK (3u << 10)
#define RCC_CCIPR_I2C1SEL_MSK (3u << 12)
/* RCC_CSR [CMSIS] */
#define RCC_CSR_RMVF (1u << 23)
#define RCC_CSR_FWRSTF (1u << 24)
#define RCC_CSR_OBLRSTF (1u << 25)
#define RCC_CSR_PINRSTF (1u << 26)
#define RCC_CSR_BORRSTF (1u << 27)
#define RCC_CSR_SFTRSTF (1u << 28)
#define RCC_CSR_IWDGRSTF (1u << 29)
#define RCC_CSR_WWDGRSTF (1u << 30)
#define RCC_CSR_LPWRRSTF (1u << 31)

/* PWR [CMSIS] */
#define PWR_CR1_VOS_POS 9u
#define PWR_CR1_VOS_MSK (3u << 9) /* 01 Range 1, 10 Range 2 */
#define PWR_CR2_IOSV (1u << 9)    /* VDDIO2 valid: port G pins PG[15:2] usable */
#define PWR_SR2_VOSF (1u << 10)

/* FLASH_ACR [REF 2.2] */
#define FLASH_ACR_LATENCY_MSK 7u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* TIM [ARMv7M] */
#define TIM_CR1_CEN (1u << 0)
#define TIM_CR1_URS (1u << 2) /* only overflow sets UIF (not EGR.UG) */
#define TIM_DIER_UIE (1u << 0)
#define TIM_DIER_CC1IE (1u << 1)
#define TIM_DIER_CC2IE (1u << 2)
#define TIM_DIER_CC3IE (1u << 3)
#define TIM_SR_UIF (1u << 0)
#define TIM_SR_CC1IF (1u << 1)
#define TIM_SR_CC2IF (1u << 2)
#define TIM_SR_CC3IF (1u << 3)
#define TIM_EGR_UG (1u << 0)

/* USART / LPUART [REF 2.6], [ARMv7M] */
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_IDLEIE (1u << 4)
#define USART_CR3_DMAR (1u << 6)
#define USART_CR3_DMAT (1u << 7)
#define USART_CR3_OVRDIS (1u << 12)
#define USART_ISR_ORE (1u << 3)
#define USART_ISR_IDLE (1u << 4)
#define USART_ISR_TC (1u << 6)
#define USART_ICR_ORECF (1u << 3)
#define USART_ICR_IDLECF (1u << 4)

/* I2C [CMSIS] */
#define I2C_CR1_PE (1u << 0)
#define I2C_CR2_RD_WRN (1u << 10)
#define I2C_CR2_START (1u << 13)
#define I2C_CR2_STOP (1u << 14)
#define I2C_CR2_NBYTES_POS 16u
#define I2C_CR2_AUTOEND (1u << 25)
#define I2C_ISR_TXE (1u << 0)
#define I2C_ISR_TXIS (1u << 1)
#define I2C_ISR_RXNE (1u << 2)
#define I2C_ISR_NACKF (1u << 4)
#define I2C_ISR_STOPF (1u << 5)
#define I2C_ISR_TC (1u << 6)
#define I2C_ISR_BERR (1u << 8)
#define I2C_ISR_ARLO (1u << 9)
#define I2C_ISR_BUSY (1u << 15)
#define I2C_ICR_NACKCF (1u << 4)
#define I2C_ICR_STOPCF (1u << 5)
#define I2C_ICR_BERRCF (1u << 8)
#define I2C_ICR_ARLOCF (1u << 9)

/* DMA v1 [ARMv7M]: CCR and the per-channel flags in ISR/IFCR (4 bits per channel: GIF, TCIF, HTIF, TEIF) */
#define DMA_CCR_EN (1u << 0)
#define DMA_CCR_TCIE (1u << 1)
#define DMA_CCR_HTIE (1u << 2)
#define DMA_CCR_DIR (1u << 4) /* 1: memory -> peripheral */
#define DMA_CCR_CIRC (1u << 5)
#define DMA_CCR_MINC (1u << 7)
#define DMA_ISR_TCIF(ch) (1u << (4u * ((ch) - 1u) + 1u))
#define DMA_IFCR_CGIF(ch) (1u << (4u * ((ch) - 1u)))
#define DMA_CSELR_POS(ch) (4u * ((ch) - 1u))
#define L496_LPUART_DMA_REQ 4u /* [CUBEMX] */
#define L496_LPUART_TX_CH 6u
#define L496_LPUART_RX_CH 7u

/* GPIO modes */
#define GPIO_MODE_IN 0u
#define GPIO_MODE_OUT 1u
#define GPIO_MODE_AF 2u

#endif
