// Semihosting (Arm "bkpt 0xAB" on M-profile) for the firmware harness: console output
// and an exit status that QEMU returns as its own (-semihosting-config enable=on).
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// SYS_WRITE0: writes a NUL-terminated string to the host console.
void fw_write(const char* text);
// Decimal, no padding.
void fw_write_u32(uint32_t value);
void fw_write_u64(uint64_t value);
// " key=value" (what tflm_vmcu/firmware/qemu.py parses from the report line).
void fw_write_field(const char* key, uint64_t value);
// SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit: QEMU exits with `code`.
__attribute__((noreturn)) void fw_exit(int code);

#ifdef __cplusplus
}
#endif
