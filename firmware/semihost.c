// Semihosting calls: r0 = operation, r1 = argument, "bkpt 0xAB", result in r0.
#include "semihost.h"

enum {
  kSysWrite0 = 0x04,
  kSysExitExtended = 0x20,
  kAdpStoppedApplicationExit = 0x20026,
};

static uint32_t semihost_call(uint32_t op, const void* arg) {
  register uint32_t r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void fw_write(const char* text) { semihost_call(kSysWrite0, text); }

void fw_write_u64(uint64_t value) {
  char buffer[21];
  char* p = buffer + sizeof(buffer) - 1;
  *p = '\0';
  do {
    *--p = (char)('0' + (int)(value % 10u));
    value /= 10u;
  } while (value != 0);
  fw_write(p);
}

void fw_write_u32(uint32_t value) { fw_write_u64(value); }

void fw_write_field(const char* key, uint64_t value) {
  fw_write(" ");
  fw_write(key);
  fw_write("=");
  fw_write_u64(value);
}

void fw_exit(int code) {
  const uint32_t block[2] = {kAdpStoppedApplicationExit, (uint32_t)code};
  semihost_call(kSysExitExtended, block);
  for (;;) {
  }
}
