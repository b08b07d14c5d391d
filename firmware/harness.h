// Shared by the firmwares' main.cc (this runtime's, and TFLM's in firmware/tflm_plugin):
// the instruction-count calibration loop and one-line failures.
#pragma once

#include <stdint.h>

#include "firmware.h"
#include "semihost.h"

namespace fw {

// Instructions of the calibration loop: 2 per iteration (subs, bne).
constexpr uint32_t kCalibrationIterations = 1u << 18;

// Core clock ticks of a loop of known length, to turn ticks into instructions when
// QEMU runs with -icount (see fw_ticks_start).
inline uint64_t CalibrationTicks() {
  uint32_t n = kCalibrationIterations;
  fw_ticks_start();
  __asm__ volatile(
      "1: subs %0, %0, #1\n"
      "   bne 1b\n"
      : "+l"(n)
      :
      : "cc");
  return fw_ticks_elapsed();
}

// Prints "firmware: WHAT: MESSAGE" and returns the exit code.
inline int Fail(int code, const char* what, const char* message) {
  fw_write("firmware: ");
  fw_write(what);
  fw_write(": ");
  fw_write(message);
  fw_write("\n");
  return code;
}

}  // namespace fw
