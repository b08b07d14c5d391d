// Startup for the MPS2 boards under QEMU (Cortex-M3/M4/M7; any ARMv6-M/v7-M/v8-M core).
//
// Reset runs on the main stack (MSP, a small handler stack): enable the FPU, copy
// .data, zero .bss, paint the thread stack, run the static constructors, then switch
// to the process stack (PSP) and call main(). Faults are taken on MSP, so even a
// thread stack overflow ends in a clean semihosting exit with a distinct code
// (firmware.h) rather than a lockup.
#include <stddef.h>
#include <stdint.h>

#include "firmware.h"
#include "semihost.h"

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_limit[], __stack_top[], __handler_stack_top[];
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

#define REG32(address) (*(volatile uint32_t*)(address))
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_SHCSR REG32(0xE000ED24u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)

// The thread: main() on PSP, its return value as the exit status.
__attribute__((noreturn, used)) static void fw_thread(void) {
  int code = main();
  if (code == kFwBitExact && fw_stack_high_water() >= fw_stack_size()) code = kFwStackOverflow;
  fw_exit(code);
}

// Switches the thread to PSP at the top of the painted stack (CONTROL.SPSEL = 1).
// Naked: no frame on MSP is used after the switch.
__attribute__((naked, noreturn)) static void fw_enter_thread(void) {
  __asm__ volatile(
      "ldr r0, =__stack_top\n"
      "msr psp, r0\n"
      "movs r0, #2\n"
      "msr control, r0\n"
      "isb\n"
      "bl fw_thread\n"
      "b .\n"
      ".ltorg\n");
}

// Plain loops: keep the compiler from turning them into memcpy/memset calls.
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void Reset_Handler(void) {
#if defined(__ARM_FP)
  SCB_CPACR |= 0xFu << 20;  // CP10 and CP11: full access to the FPU
  __asm__ volatile("dsb\nisb" ::: "memory");
#endif
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__) || \
    defined(__ARM_ARCH_8_1M_MAIN__)
  // MemManage, BusFault and UsageFault as their own exceptions (distinct exit codes).
  SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
#endif
  for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t* p = __bss_start; p < __bss_end; ++p) *p = 0;
  for (volatile uint32_t* p = __stack_limit; p < __stack_top; ++p) *p = FW_STACK_PAINT;
  for (void (**f)(void) = __preinit_array_start; f < __preinit_array_end; ++f) (*f)();
  for (void (**f)(void) = __init_array_start; f < __init_array_end; ++f) (*f)();
  fw_enter_thread();
}

uint32_t fw_stack_size(void) {
  return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)__stack_limit);
}

uint32_t fw_stack_high_water(void) {
  const volatile uint32_t* p = __stack_limit;
  while (p < __stack_top && *p == FW_STACK_PAINT) ++p;
  return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

static volatile uint32_t g_systick_wraps;
#define FW_SYSTICK_RELOAD 0xFFFFFFu

void SysTick_Handler(void) { g_systick_wraps = g_systick_wraps + 1u; }

void fw_ticks_start(void) {
  SYST_CSR = 0;
  g_systick_wraps = 0;
  SYST_RVR = FW_SYSTICK_RELOAD;
  SYST_CVR = 0;                           // any write clears the counter and COUNTFLAG
  SYST_CSR = (1u << 2) | (1u << 1) | 1u;  // core clock, interrupt on wrap, enable
}

uint64_t fw_ticks_elapsed(void) {
  uint32_t wraps, value;
  do {  // a wrap between the two reads: read again
    wraps = g_systick_wraps;
    value = SYST_CVR;
  } while (wraps != g_systick_wraps);
  // From 0 the counter reloads, counts down to 0 (one wrap, reload + 1 ticks), and so on.
  const uint64_t period = FW_SYSTICK_RELOAD + 1u;
  return (uint64_t)wraps * period + (value == 0 ? 0u : period - value);
}

void Default_Handler(void) {
  uint32_t ipsr;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  ipsr &= 0x1FFu;
  fw_write("\nfirmware: exception ");
  fw_write_u32(ipsr);
  fw_write(ipsr == 3 ? " (HardFault)\n" : "\n");
  fw_exit(kFwFaultBase + (int)(ipsr < 127 ? ipsr : 127));
}

void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));

#define FW_EXTERNAL_IRQS 32

typedef void (*FwVector)(void);
__attribute__((section(".vectors"), used)) const FwVector g_vectors[16 + FW_EXTERNAL_IRQS] = {
    (FwVector)(uintptr_t)__handler_stack_top,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    Default_Handler,
    Default_Handler,
    Default_Handler,
    Default_Handler,
    SVC_Handler,
    DebugMon_Handler,
    Default_Handler,
    PendSV_Handler,
    SysTick_Handler,
    [16 ... 16 + FW_EXTERNAL_IRQS - 1] = Default_Handler,
};

// A pure virtual call cannot happen in a correct program; end it like a fault.
void __cxa_pure_virtual(void) { fw_exit(kFwFaultBase + 127); }
