/* QEMU TCG plugin: exact counts of executed guest instructions.
 *
 * Every translated instruction gets an inline add (per instruction, not per translation
 * block, so a block left early by an exception or a semihosting exit is counted up to
 * the instruction that left it). Arguments (comma-separated `key=value`, repeatable):
 *
 *   out=PATH               write the totals as JSON to PATH at exit (default: QEMU's log)
 *   range=NAME@LO-HI       also count the instructions whose address is in [LO, HI)
 *   mark=ADDR              log (ADDR, instructions executed so far) each time the
 *                          instruction at ADDR is about to execute
 *   max_events=N           keep at most N marks (default 1048576; more are dropped)
 *
 * The counters are plain (non-atomic) adds: exact for one vCPU, as on the MPS2 boards.
 * Addresses are hexadecimal (0x prefix optional). A mark's count is taken before the
 * instruction at ADDR executes, so the difference of two marks is the number of
 * instructions executed from the first marked instruction up to, not including, the
 * second. Output:
 *
 *   {"total": N, "ranges": [{"name": "...", "lo": LO, "hi": HI, "count": N}, ...],
 *    "events": [[ADDR, COUNT], ...], "events_dropped": N}
 *
 * Debian's QEMU ships no qemu-plugin.h: the few declarations used are below, as in
 * QEMU 7.2's include/qemu/qemu-plugin.h (plugin API version 1). Build:
 *
 *   gcc -O2 -shared -fPIC -o libinsn_count.so insn_count.c
 *
 * Run: qemu-system-arm ... -plugin ./libinsn_count.so,out=counts.json,mark=0x18d4
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- plugin API (QEMU 7.2, include/qemu/qemu-plugin.h) ------------------------------ */

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags {
  QEMU_PLUGIN_CB_NO_REGS,
  QEMU_PLUGIN_CB_R_REGS,
  QEMU_PLUGIN_CB_RW_REGS,
};

enum qemu_plugin_op {
  QEMU_PLUGIN_INLINE_ADD_U64,
};

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void* userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn* insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void* userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn* insn,
                                                enum qemu_plugin_op op, void* ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);
struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb* tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn* insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void* userdata);
void qemu_plugin_outs(const char* string);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* --- state -------------------------------------------------------------------------- */

typedef struct {
  char* name;
  uint64_t lo, hi;
  uint64_t count;
} Range;

typedef struct {
  uint64_t addr, count;
} Event;

static uint64_t g_total;
static Range* g_ranges;
static size_t g_num_ranges;
static uint64_t* g_marks;
static size_t g_num_marks;
static Event* g_events;
static size_t g_num_events, g_cap_events, g_max_events = 1u << 20;
static uint64_t g_events_dropped;
static char* g_out;

static void fail(const char* message, const char* arg) {
  char line[512];
  snprintf(line, sizeof line, "insn_count: %s: %s\n", message, arg);
  qemu_plugin_outs(line);
}

static bool parse_u64(const char* s, const char* end, uint64_t* value) {
  if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
  if (s == end) return false;
  uint64_t v = 0;
  for (; s < end; ++s) {
    const char c = *s;
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = (unsigned)(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = (unsigned)(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = (unsigned)(c - 'A' + 10);
    } else {
      return false;
    }
    if (v >> 60) return false;
    v = v * 16 + digit;
  }
  *value = v;
  return true;
}

static void* grow(void* array, size_t count, size_t size) {
  return realloc(array, (count + 1) * size);
}

static char* copy_string(const char* s, size_t n) {
  char* copy = malloc(n + 1);
  if (copy) {
    memcpy(copy, s, n);
    copy[n] = '\0';
  }
  return copy;
}

static bool add_range(const char* spec) {
  const char* at = strchr(spec, '@');
  const char* lo_text = at ? at + 1 : spec;
  const char* dash = strchr(lo_text, '-');
  uint64_t lo, hi;
  if (!dash || !parse_u64(lo_text, dash, &lo) || !parse_u64(dash + 1, dash + strlen(dash), &hi) ||
      hi < lo) {
    return false;
  }
  Range* ranges = grow(g_ranges, g_num_ranges, sizeof *g_ranges);
  if (!ranges) return false;
  g_ranges = ranges;
  Range* r = &g_ranges[g_num_ranges++];
  r->name = copy_string(spec, at ? (size_t)(at - spec) : 0);
  if (!r->name) return false;
  r->lo = lo;
  r->hi = hi;
  r->count = 0;
  return true;
}

static bool add_mark(const char* spec) {
  uint64_t addr;
  if (!parse_u64(spec, spec + strlen(spec), &addr)) return false;
  uint64_t* marks = grow(g_marks, g_num_marks, sizeof *g_marks);
  if (!marks) return false;
  g_marks = marks;
  g_marks[g_num_marks++] = addr;
  return true;
}

/* --- callbacks ---------------------------------------------------------------------- */

static void on_mark(unsigned int vcpu_index, void* userdata) {
  (void)vcpu_index;
  if (g_num_events == g_max_events) {
    ++g_events_dropped;
    return;
  }
  if (g_num_events == g_cap_events) {
    size_t cap = g_cap_events ? 2 * g_cap_events : 1024;
    if (cap > g_max_events) cap = g_max_events;
    Event* events = realloc(g_events, cap * sizeof *g_events);
    if (!events) {
      ++g_events_dropped;
      return;
    }
    g_events = events;
    g_cap_events = cap;
  }
  g_events[g_num_events].addr = (uint64_t)(uintptr_t)userdata;
  g_events[g_num_events].count = g_total;
  ++g_num_events;
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
    const uint64_t pc = qemu_plugin_insn_vaddr(insn);
    /* QEMU runs an instruction's callbacks before its inline ops, so a mark sees the
     * count before the marked instruction; differences between marks do not depend on
     * that order, as long as it is the same for every instruction. */
    for (size_t m = 0; m < g_num_marks; ++m) {
      if (g_marks[m] == pc) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                               (void*)(uintptr_t)pc);
        break;
      }
    }
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_total, 1);
    for (size_t r = 0; r < g_num_ranges; ++r) {
      if (pc >= g_ranges[r].lo && pc < g_ranges[r].hi) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &g_ranges[r].count, 1);
      }
    }
  }
}

static void write_json_string(FILE* f, const char* s) {
  fputc('"', f);
  for (; *s; ++s) {
    const unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
    } else if (c < 0x20) {
      fprintf(f, "\\u%04x", c);
    } else {
      fputc(c, f);
    }
  }
  fputc('"', f);
}

static void write_json(FILE* f) {
  fprintf(f, "{\"total\": %" PRIu64 ", \"ranges\": [", g_total);
  for (size_t r = 0; r < g_num_ranges; ++r) {
    fputs(r ? ", {\"name\": " : "{\"name\": ", f);
    write_json_string(f, g_ranges[r].name);
    fprintf(f, ", \"lo\": %" PRIu64 ", \"hi\": %" PRIu64 ", \"count\": %" PRIu64 "}",
            g_ranges[r].lo, g_ranges[r].hi, g_ranges[r].count);
  }
  fputs("], \"events\": [", f);
  for (size_t e = 0; e < g_num_events; ++e) {
    fprintf(f, "%s[%" PRIu64 ", %" PRIu64 "]", e ? ", " : "", g_events[e].addr, g_events[e].count);
  }
  fprintf(f, "], \"events_dropped\": %" PRIu64 "}\n", g_events_dropped);
}

static void at_exit(qemu_plugin_id_t id, void* userdata) {
  (void)id;
  (void)userdata;
  if (g_out) {
    FILE* f = fopen(g_out, "w");
    if (!f) {
      fail("cannot write", g_out);
      return;
    }
    write_json(f);
    fclose(f);
  } else {
    char line[64];
    snprintf(line, sizeof line, "insn_count: total %" PRIu64 "\n", g_total);
    qemu_plugin_outs(line);
  }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc,
                                           char** argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    const char* arg = argv[i];
    bool ok;
    if (strncmp(arg, "out=", 4) == 0) {
      free(g_out);
      g_out = copy_string(arg + 4, strlen(arg + 4));
      ok = g_out != NULL;
    } else if (strncmp(arg, "range=", 6) == 0) {
      ok = add_range(arg + 6);
    } else if (strncmp(arg, "mark=", 5) == 0) {
      ok = add_mark(arg + 5);
    } else if (strncmp(arg, "max_events=", 11) == 0) {
      uint64_t n;
      ok = sscanf(arg + 11, "%" SCNu64, &n) == 1;
      if (ok) g_max_events = (size_t)n;
    } else {
      ok = false;
    }
    if (!ok) {
      fail("bad argument", arg);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
