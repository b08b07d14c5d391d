// Shared by the startup code and main.cc: exit codes, stack painting, the SysTick
// counter. tflm_vmcu/firmware/qemu.py decodes the same exit codes.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum FwExitCode {
  kFwBitExact = 0,
  kFwMismatch = 1,        // ran, but an output differs from the expected bytes
  kFwAllocateFailed = 2,  // AllocateTensors() failed (message printed)
  kFwInvokeFailed = 3,    // Invoke() failed (message printed)
  kFwBadHarness = 4,      // the generated headers do not match the model's inputs/outputs
  kFwStackOverflow = 5,   // the painted stack was used up to its limit
  kFwHalted = 6,          // TFLM halted: one of its checks failed (firmware/tflm_plugin)
  // A fault or unexpected exception exits with kFwFaultBase + its exception number
  // (NMI 2, HardFault 3, MemManage 4, BusFault 5, UsageFault 6, others up to 127).
  kFwFaultBase = 128,
};

// The pattern painted over the thread stack at reset.
#define FW_STACK_PAINT 0x5AA5C33Cu

// The thread stack (main runs on PSP) and its size, from the linker script.
uint32_t fw_stack_size(void);
// Bytes of the thread stack ever used: scanned from its limit for the first word
// that no longer holds the paint.
uint32_t fw_stack_high_water(void);

// SysTick on the core clock, counting wraps in its interrupt. Under QEMU with
// `-icount shift=0`, one nanosecond of virtual time is one instruction.
void fw_ticks_start(void);
uint64_t fw_ticks_elapsed(void);  // core clock ticks since fw_ticks_start()

#ifdef __cplusplus
}
#endif
