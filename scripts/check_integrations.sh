#!/usr/bin/env bash
# Checks the Zephyr, Mbed and CMake-package integrations as far as this machine can,
# without Zephyr or Mbed OS themselves (docs/INTEGRATION.md says what is covered):
#
#  metadata  zephyr/module.yml and the sample's sample.yaml parse and hold the fields
#            Zephyr reads (module.yml against Zephyr's module schema); zephyr/Kconfig
#            parses (with kconfiglib when it is installed); mbed_lib.json parses and names
#            its options; the runtime's source list is the same in CMakeLists.txt, in
#            zephyr/CMakeLists.txt, under cpp/src and in Mbed's scan of the tree with
#            .mbedignore (which must find nothing else to compile or link).
#  zephyr    zephyr/CMakeLists.txt run by CMake with stand-ins for zephyr_library() and
#            the other functions it calls, every file built with Zephyr's GCC flags for a
#            Cortex-M4 with FPU (hard ABI, -Os) plus -Wall -Wextra -Werror; the sample's
#            main.cpp built the same way against stub <zephyr/...> headers (printk over
#            semihosting), linked with firmware/'s startup code and linker script. With
#            CONFIG_TFLM_VMCU_HAZARD_CHECKER=y, a program that includes ring.h runs the
#            sample's model under the hazard checker.
#  mbed      the sources and include folders of Mbed's scan, built with Mbed OS 6's
#            GCC_ARM flags (release profile, Cortex-M4F: softfp) with -std=gnu++17 and
#            -Werror; the sample linked against that archive.
#  package   the library cross-built with cmake/arm-none-eabi.cmake (cortex-m4) and
#            `cmake --install`ed into a prefix; a consumer project finds it with
#            find_package(tflm_vmcu CONFIG REQUIRED) and links the sample; a consumer for
#            another core is refused; the Python build (SKBUILD) installs no C++ library
#            (only _runtime and the sources) and a parent project's add_subdirectory() no
#            C++ files.
#  qemu      the three sample programs run on mps2-an386 and must print the same output;
#            the hazard check must report 0 hazards.
#
# Usage: scripts/check_integrations.sh [WORK_DIR]      (default: a new temporary folder)
# Needs arm-none-eabi-gcc with newlib, CMake and python3; qemu-system-arm for the runs
# (skipped, with a message, when it is missing). Exits 0 when every check that ran
# passed. The consoles are kept as WORK_DIR/hello_{zephyr,mbed,package}.console;
# tests/test_integrations.py compares them with the host runtime.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
FW="$ROOT/firmware"
SAMPLE="$ROOT/zephyr/samples/hello_vmcu"
TOOLCHAIN="$ROOT/cmake/arm-none-eabi.cmake"
SKIPPED=()

log() { printf 'check_integrations: %s\n' "$*"; }
fail() {
  printf 'check_integrations: FAILED: %s\n' "$*" >&2
  exit 1
}
# Runs a command with its output in a log file; on failure prints the log's tail.
run_logged() {
  local logfile="$1"
  shift
  if ! "$@" > "$logfile" 2>&1; then
    grep -v "^\[[0-9]*/[0-9]*\] " "$logfile" | tail -n 30 | cut -c1-400 >&2
    fail "$* (log: $logfile)"
  fi
}

for tool in arm-none-eabi-gcc arm-none-eabi-g++ cmake python3; do
  command -v "$tool" > /dev/null || fail "$tool not found (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi cmake)"
done
GENERATOR=()
if command -v ninja > /dev/null; then GENERATOR=(-G Ninja); fi
log "work folder: $WORK"

# ---------------------------------------------------------------------------------------
# metadata: module.yml, sample.yaml, Kconfig, mbed_lib.json, source lists, Mbed's scan.
python3 - "$ROOT" "$WORK" << 'PY'
import fnmatch
import json
import os
import re
import sys
from pathlib import Path

root, work = Path(sys.argv[1]), Path(sys.argv[2])
errors: list[str] = []
notes: list[str] = []


def check(ok: bool, message: str) -> None:
    if not ok:
        errors.append(message)


# Zephyr's module schema (scripts/zephyr_module.py), the parts a module.yml may use.
BUILD_KEYS = {"cmake": str, "kconfig": str, "cmake-ext": bool, "kconfig-ext": bool,
              "sysbuild-cmake": str, "sysbuild-kconfig": str, "sysbuild-cmake-ext": bool,
              "sysbuild-kconfig-ext": bool, "depends": list, "settings": dict}
TOP_KEYS = {"name": str, "build": dict, "tests": list, "samples": list, "boards": list,
            "blobs": list, "security": dict, "package-managers": dict}
try:
    import yaml
except ImportError:
    yaml = None
    notes.append("PyYAML not installed: module.yml and sample.yaml not parsed")
if yaml is not None:
    meta = yaml.safe_load((root / "zephyr/module.yml").read_text())
    check(isinstance(meta, dict), "zephyr/module.yml is not a map")
    for key, value in meta.items():
        check(key in TOP_KEYS and isinstance(value, TOP_KEYS[key]),
              f"zephyr/module.yml: unexpected '{key}: {value!r}'")
    check(meta.get("name") == "tflm-vmcu", "zephyr/module.yml: name is not tflm-vmcu")
    build = meta.get("build", {})
    for key, value in build.items():
        check(key in BUILD_KEYS and isinstance(value, BUILD_KEYS[key]),
              f"zephyr/module.yml: unexpected 'build: {key}: {value!r}'")
    check((root / build.get("cmake", "zephyr") / "CMakeLists.txt").is_file(),
          "zephyr/module.yml: build.cmake has no CMakeLists.txt")
    check((root / build.get("kconfig", "zephyr/Kconfig")).is_file(),
          "zephyr/module.yml: build.kconfig is not a file")
    samples = [d for s in meta.get("samples", []) for d in (root / s).rglob("sample.yaml")]
    check(bool(samples), "zephyr/module.yml: no sample.yaml under its samples folders")
    for sample_yaml in samples:
        sample_dir = sample_yaml.parent
        doc = yaml.safe_load(sample_yaml.read_text())
        rel = sample_yaml.relative_to(root)
        check(isinstance(doc.get("sample", {}).get("name"), str), f"{rel}: no sample.name")
        tests = doc.get("tests")
        check(isinstance(tests, dict) and bool(tests), f"{rel}: no tests")
        for name, test in (tests or {}).items():
            check("." in name and isinstance(test, dict), f"{rel}: test '{name}' malformed")
        check("tflm-vmcu" in doc.get("common", {}).get("modules", []),
              f"{rel}: common.modules does not list tflm-vmcu")
        for regex in doc.get("common", {}).get("harness_config", {}).get("regex", []):
            re.compile(regex)
        cmake = (sample_dir / "CMakeLists.txt").read_text()
        check("find_package(Zephyr" in cmake and "target_sources(app" in cmake,
              f"{sample_dir.relative_to(root)}/CMakeLists.txt is not a Zephyr application")
        for line in (sample_dir / "prj.conf").read_text().splitlines():
            check(line.startswith("#") or not line.strip()
                  or re.fullmatch(r"CONFIG_[A-Z0-9_]+=(y|n|-?[0-9]+|\".*\")", line) is not None,
                  f"{sample_dir.relative_to(root)}/prj.conf: bad line '{line}'")

# zephyr/Kconfig: parsed by kconfiglib (Zephyr's Kconfig parser) when installed, with
# stand-ins for the Zephyr symbols it refers to.
kconfig_text = (root / "zephyr/Kconfig").read_text()
try:
    import kconfiglib
except ImportError:
    kconfiglib = None
    notes.append("kconfiglib not installed: zephyr/Kconfig checked as text only")
    check(re.search(r"^config TFLM_VMCU\n\tbool ", kconfig_text, re.M) is not None,
          "zephyr/Kconfig: no 'config TFLM_VMCU' of type bool")
if kconfiglib is not None:
    wrapper = work / "Kconfig.check"
    wrapper.write_text(
        'mainmenu "check"\nconfig CPP\n\tbool "C++"\nconfig REQUIRES_FULL_LIBC\n\tbool\n'
        f'source "{root}/zephyr/Kconfig"\n')
    kconf = kconfiglib.Kconfig(str(wrapper), warn_to_stderr=False)
    check(not kconf.warnings, f"zephyr/Kconfig: {kconf.warnings}")
    main_sym = kconf.syms.get("TFLM_VMCU")
    hazard = kconf.syms.get("TFLM_VMCU_HAZARD_CHECKER")
    check(main_sym is not None and hazard is not None, "zephyr/Kconfig: symbols missing")
    if main_sym is not None and hazard is not None:
        check(main_sym.str_value == "n", "CONFIG_TFLM_VMCU must default to n")
        check(not main_sym.assignable, "CONFIG_TFLM_VMCU can be set without CONFIG_CPP")
        kconf.syms["CPP"].set_value(2)
        main_sym.set_value(2)
        check(main_sym.str_value == "y", "CONFIG_TFLM_VMCU=y refused with CONFIG_CPP=y")
        check(kconf.syms["REQUIRES_FULL_LIBC"].str_value == "y",
              "CONFIG_TFLM_VMCU does not select REQUIRES_FULL_LIBC")
        check(hazard.str_value == "n", "CONFIG_TFLM_VMCU_HAZARD_CHECKER must default to n")

# mbed_lib.json.
lib = json.loads((root / "mbed_lib.json").read_text())
check(set(lib) <= {"name", "config", "target_overrides", "macros", "requires"},
      f"mbed_lib.json: unexpected keys {sorted(set(lib))}")
check(re.fullmatch(r"[a-z0-9-]+", lib.get("name", "")) is not None, "mbed_lib.json: bad name")
for option, spec in lib.get("config", {}).items():
    check(re.fullmatch(r"[a-z0-9-]+", option) is not None, f"mbed_lib.json: bad option {option}")
    check(isinstance(spec, dict) and isinstance(spec.get("help"), str) and "value" in spec,
          f"mbed_lib.json: option {option} needs help and value")

# Source lists.
top = (root / "CMakeLists.txt").read_text()
m = re.search(r"set\(TFLM_VMCU_SOURCES\s+(.*?)\)", top, re.S)
top_sources = set(m.group(1).split()) if m else set()
z = re.search(r"zephyr_library_sources\((.*?)\)", (root / "zephyr/CMakeLists.txt").read_text(), re.S)
zephyr_sources = {s.replace("${TFLM_VMCU_DIR}/", "") for s in z.group(1).split()} if z else set()
tree_sources = {p.relative_to(root).as_posix() for p in (root / "cpp/src").rglob("*.cc")}
check(bool(top_sources) and top_sources == tree_sources,
      f"CMakeLists.txt TFLM_VMCU_SOURCES differ from cpp/src: {sorted(top_sources ^ tree_sources)}")
check(zephyr_sources == tree_sources,
      f"zephyr/CMakeLists.txt sources differ from cpp/src: {sorted(zephyr_sources ^ tree_sources)}")

# Mbed's scan (Mbed OS tools/resources): the library lives in a folder of the application,
# here "lib"; .mbedignore patterns are fnmatch patterns joined to their folder; folders
# starting with "." and label folders are skipped; every parent folder of a header is an
# include folder; .c/.cc/.cpp/.s are compiled; .a/.o/.ld/... would be linked.
LABEL_PREFIXES = ("TARGET_", "TOOLCHAIN_", "FEATURE_", "COMPONENT_")
LEGACY = {"LPC11U24", "LPC1768", "LPC2368", "LPC4088", "LPC812", "KL25Z", "ARM", "uARM",
          "IAR", "GCC_ARM", "GCC_CS", "GCC_CR", "GCC_CW", "GCC_CW_EWL", "GCC_CW_NEWLIB",
          "ARMC6", "TESTS", "TEST_APPS"}
LINKED = {".o", ".a", ".ar", ".ld", ".sct", ".icf", ".lib", ".bld"}
patterns: list[str] = []
sources, includes, linked = set(), set(), set()


def ignored(path: str) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


for dirpath, dirs, files in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    fake_dir = "lib" if rel_dir == "." else f"lib/{rel_dir}"
    if ".mbedignore" in files:
        lines = (Path(dirpath) / ".mbedignore").read_text().splitlines()
        patterns += [f"{fake_dir}/{ln.strip()}" for ln in lines
                     if ln.strip() and not ln.startswith("#")]
    if ignored(f"{fake_dir}/"):
        dirs[:] = []
        continue
    dirs[:] = sorted(d for d in dirs if not (d.startswith(".") or d in LEGACY
                     or d.startswith(LABEL_PREFIXES) or ignored(f"{fake_dir}/{d}/")))
    for name in files:
        if name.startswith(".") or ignored(f"{fake_dir}/{name}"):
            continue
        rel = os.path.normpath(os.path.join(rel_dir, name))
        ext = os.path.splitext(name)[1].lower()
        if ext in {".c", ".cc", ".cpp", ".s"}:
            sources.add(rel)
        elif ext in {".h", ".hh", ".hpp"}:
            parts = Path(rel).parts[:-1]
            includes.update(Path(*parts[:n]).as_posix() if n else "." for n in range(len(parts) + 1))
        elif ext in LINKED:
            linked.add(rel)
check(sources == tree_sources,
      f"Mbed's scan compiles other files than cpp/src/**/*.cc: {sorted(sources ^ tree_sources)}")
check(not linked, f"Mbed's scan would link {sorted(linked)}: add them to .mbedignore")
stems = [Path(s).stem for s in sources]
check(len(stems) == len(set(stems)), "Mbed needs unique object names: two sources share a stem")
(work / "mbed_sources.txt").write_text("".join(f"{root / s}\n" for s in sorted(sources)))
(work / "mbed_includes.txt").write_text("".join(f"{root / i}\n" for i in sorted(includes)))

for note in notes:
    print(f"check_integrations: skipped: {note}")
if errors:
    for e in errors:
        print(f"check_integrations: FAILED: {e}", file=sys.stderr)
    sys.exit(1)
print(f"check_integrations: metadata: ok ({len(tree_sources)} sources in every list; "
      f"Mbed include folders: {len(includes)})")
PY

# ---------------------------------------------------------------------------------------
# Stand-ins shared by the builds: <zephyr/kernel.h>, <zephyr/sys/printk.h> (printk over
# semihosting), Zephyr's generated autoconf.h and its stdint type fix-up, and a harness
# whose main() calls the sample's (renamed with -Dmain=hello_vmcu_main) and reports the
# stack it used.
STUB="$WORK/stub"
mkdir -p "$STUB/include/zephyr/sys"
cat > "$STUB/include/zephyr/kernel.h" << 'EOF'
/* Stand-in for Zephyr's <zephyr/kernel.h>: the sample uses only printk. */
#pragma once
#include <zephyr/sys/printk.h>
EOF
cat > "$STUB/include/zephyr/sys/printk.h" << 'EOF'
/* Stand-in for Zephyr's <zephyr/sys/printk.h>: the same declaration (C linkage, printf
 * format checking); the harness prints over semihosting. */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
__attribute__((format(printf, 1, 2))) void printk(const char* fmt, ...);
#ifdef __cplusplus
}
#endif
EOF
cat > "$STUB/autoconf.h" << 'EOF'
/* The Kconfig symbols of the sample's prj.conf, as Zephyr's generated autoconf.h. */
#define CONFIG_CPP 1
#define CONFIG_STD_CPP17 1
#define CONFIG_TFLM_VMCU 1
#define CONFIG_PRINTK 1
#define CONFIG_MAIN_STACK_SIZE 4096
EOF
cat > "$STUB/zephyr_stdint.h" << 'EOF'
/* As Zephyr's toolchain/zephyr_stdint.h (passed with -imacros): on a 32-bit core,
 * int32_t is int (not long), int64_t long long, intptr_t long. */
#undef __INT32_TYPE__
#undef __UINT32_TYPE__
#undef __INT_LEAST32_TYPE__
#undef __UINT_LEAST32_TYPE__
#undef __INT_FAST32_TYPE__
#undef __UINT_FAST32_TYPE__
#define __INT32_TYPE__ int
#define __UINT32_TYPE__ unsigned int
#define __INT_LEAST32_TYPE__ int
#define __UINT_LEAST32_TYPE__ unsigned int
#define __INT_FAST32_TYPE__ int
#define __UINT_FAST32_TYPE__ unsigned int
#undef __INT64_TYPE__
#undef __UINT64_TYPE__
#define __INT64_TYPE__ long long int
#define __UINT64_TYPE__ unsigned long long int
#undef __INTPTR_TYPE__
#undef __UINTPTR_TYPE__
#define __INTPTR_TYPE__ long int
#define __UINTPTR_TYPE__ long unsigned int
#undef __INT32_C
#undef __UINT32_C
#define __INT32_C(c) c
#define __UINT32_C(c) c##U
EOF
cat > "$STUB/harness.cpp" << 'EOF'
// Runs the sample's main() on the QEMU board of firmware/ and prints the stack it used.
#include <stdarg.h>
#include <stdio.h>

#include "firmware.h"
#include "semihost.h"

extern "C" void printk(const char* fmt, ...) {
  char line[256];
  va_list args;
  va_start(args, fmt);
  vsnprintf(line, sizeof(line), fmt, args);
  va_end(args);
  fw_write(line);
}

int hello_vmcu_main();

int main() {
  const int code = hello_vmcu_main();
  fw_write("harness: stack ");
  fw_write_u32(fw_stack_high_water());
  fw_write(" bytes\n");
  return code;
}
EOF
cat > "$STUB/hazard.cpp" << 'EOF'
// With CONFIG_TFLM_VMCU_HAZARD_CHECKER=y the application reaches ring.h: run the
// sample's model with every pool access checked, and fail on any hazard.
#include <stddef.h>
#include <stdint.h>
#include <zephyr/sys/printk.h>

#include "model_data.h"
#include "ring.h"
#include "tflm_vmcu/interpreter.h"

namespace {
alignas(16) uint8_t g_memory[G_MODEL_ARENA_BYTES];
int32_t g_tensor_tags[G_MODEL_ARENA_BYTES];
int32_t g_element_tags[G_MODEL_ARENA_BYTES];
uint32_t g_pins[G_MODEL_ARENA_BYTES];
tflm_vmcu::HazardState g_hazard;
}  // namespace

int main(void) {
  tflm_vmcu::Interpreter interp(g_model, g_model_len, g_memory, sizeof(g_memory));
  if (interp.AllocateTensors() != tflm_vmcu::Status::kOk) {
    printk("hazard_check: %s\n", interp.error_message());
    return 1;
  }
  const size_t n = interp.pool_bytes();
  for (size_t i = 0; i < n; ++i) {
    g_tensor_tags[i] = -1;
    g_element_tags[i] = -1;
    g_pins[i] = 0;
  }
  g_hazard.tensor = g_tensor_tags;
  g_hazard.element = g_element_tags;
  g_hazard.pin = g_pins;
  g_hazard.pool_size = static_cast<uint32_t>(n);
  interp.set_hazard_state(&g_hazard);
  for (size_t k = 0; k < interp.inputs_size(); ++k) {
    tflm_vmcu::Tensor* t = interp.input(k);
    for (size_t i = 0; i < t->bytes; ++i) t->data[i] = static_cast<uint8_t>(i * 37u + 11u);
  }
  if (interp.Invoke() != tflm_vmcu::Status::kOk) {
    printk("hazard_check: %s\n", interp.error_message());
    return 1;
  }
  // Every op and unit of work advances g_hazard.unit: a count above 1 shows the checker ran.
  printk("hazard_check: %u hazards in %u units %s\n", static_cast<unsigned>(g_hazard.count),
         static_cast<unsigned>(g_hazard.unit), g_hazard.first);
  return g_hazard.count == 0 ? 0 : 1;
}
EOF

# A toolchain file with only the CPU flags (each build adds its system's flags itself)
# and newlib-nano, as cmake/arm-none-eabi.cmake links.
write_toolchain() {
  cat > "$1" << EOF
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "$2")
set(CMAKE_CXX_FLAGS_INIT "$2")
set(CMAKE_EXE_LINKER_FLAGS_INIT "$2 --specs=nano.specs")
EOF
}

# The sample program's link step: firmware/'s vector table, reset handler and linker
# script (4 MiB code at 0x0, RAM at 0x20000000), newlib-nano for vsnprintf (nosys: its
# _sbrk takes heap from the end of .bss), libm.
# shellcheck disable=SC2016  # CMake variables, expanded by CMake
BOARD_LINK_CMAKE='
target_include_directories(board PRIVATE ${FW})
target_link_options(hello PRIVATE -nostartfiles -T${FW}/mps2.ld -Wl,--gc-sections
  --specs=nosys.specs -Wl,-Map=${CMAKE_CURRENT_BINARY_DIR}/hello.map)
set_target_properties(hello PROPERTIES SUFFIX ".elf" LINKER_LANGUAGE C)'

# ---------------------------------------------------------------------------------------
# zephyr: zephyr/CMakeLists.txt with Zephyr's flags (GCC, Cortex-M4, CONFIG_FPU with the
# hard ABI, CONFIG_SIZE_OPTIMIZATIONS; cmake/compiler/gcc/ and the root CMakeLists.txt of
# Zephyr 3.x/4.x).
ZDIR="$WORK/zephyr"
mkdir -p "$ZDIR"
write_toolchain "$ZDIR/toolchain.cmake" "-mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard"
cat > "$ZDIR/CMakeLists.txt" << EOF
cmake_minimum_required(VERSION 3.20)
project(tflm_vmcu_zephyr_flags LANGUAGES C CXX)
set(ROOT "$ROOT")
set(FW "$FW")
set(STUB "$STUB")

# zephyr_interface: the options Zephyr gives every library and the application.
add_library(zephyr_interface INTERFACE)
target_compile_options(zephyr_interface INTERFACE
  -mabi=aapcs -mfp16-format=ieee -Os -g -gdwarf-4
  "SHELL:-imacros \${STUB}/autoconf.h" "SHELL:-imacros \${STUB}/zephyr_stdint.h"
  -ffreestanding -fno-strict-aliasing -fno-common -fno-pie -fno-pic
  -fno-asynchronous-unwind-tables -ftls-model=local-exec -fno-reorder-functions
  -fno-defer-pop -fno-printf-return-value -ffunction-sections -fdata-sections
  --param=min-pagesize=0
  -Wall -Wformat -Wformat-security -Wno-format-zero-length -Wno-main -Wpointer-arith
  -Wexpansion-to-defined -Wno-unused-but-set-variable -Wno-address-of-packed-member
  "\$<\$<COMPILE_LANGUAGE:CXX>:-std=c++17;-Wno-register;-fcheck-new;-fno-exceptions;-fno-rtti>")
target_compile_definitions(zephyr_interface INTERFACE __ZEPHYR__=1 KERNEL)
target_include_directories(zephyr_interface INTERFACE \${STUB}/include)
add_custom_target(compiler-cpp)
set_property(TARGET compiler-cpp PROPERTY no_threadsafe_statics -fno-threadsafe-statics)

# Kconfig values as Zephyr hands them to CMake (prj.conf of the sample; with -DHAZARD=ON
# also CONFIG_TFLM_VMCU_HAZARD_CHECKER=y, and the application is the hazard check).
set(CONFIG_CPP y)
set(CONFIG_STD_CPP17 y)
set(CONFIG_TFLM_VMCU y)
if(HAZARD)
  set(CONFIG_TFLM_VMCU_HAZARD_CHECKER y)
  set(APP_SOURCE \${STUB}/hazard.cpp)
else()
  set(APP_SOURCE ${SAMPLE}/src/main.cpp)
endif()

# Stand-ins for the Zephyr CMake functions (cmake/modules/extensions.cmake).
macro(zephyr_library)
  set(ZEPHYR_CURRENT_LIBRARY modules__tflm_vmcu__zephyr)
  add_library(\${ZEPHYR_CURRENT_LIBRARY} STATIC)
  target_link_libraries(\${ZEPHYR_CURRENT_LIBRARY} PUBLIC zephyr_interface)
endmacro()
function(zephyr_library_sources)
  target_sources(\${ZEPHYR_CURRENT_LIBRARY} PRIVATE \${ARGN})
endfunction()
function(zephyr_library_include_directories)
  target_include_directories(\${ZEPHYR_CURRENT_LIBRARY} PRIVATE \${ARGN})
endfunction()
function(zephyr_library_compile_options)
  target_compile_options(\${ZEPHYR_CURRENT_LIBRARY} PRIVATE \${ARGN})
endfunction()
function(zephyr_library_compile_definitions)
  target_compile_definitions(\${ZEPHYR_CURRENT_LIBRARY} PRIVATE \${ARGN})
endfunction()
function(zephyr_include_directories)
  target_include_directories(zephyr_interface INTERFACE \${ARGN})
endfunction()

add_subdirectory(\${ROOT}/zephyr module)
target_compile_options(modules__tflm_vmcu__zephyr PRIVATE -Wextra -Werror)

# The application library "app" (the sample), then the program.
add_library(app STATIC \${APP_SOURCE})
target_include_directories(app PRIVATE ${SAMPLE}/src)
target_link_libraries(app PUBLIC zephyr_interface)
target_compile_options(app PRIVATE -Wextra -Werror)
target_compile_definitions(app PRIVATE main=hello_vmcu_main)
add_library(board OBJECT \${STUB}/harness.cpp \${FW}/startup.c \${FW}/semihost.c)
add_executable(hello \$<TARGET_OBJECTS:board>)
target_link_libraries(hello PRIVATE app modules__tflm_vmcu__zephyr m)
$BOARD_LINK_CMAKE
EOF
run_logged "$WORK/zephyr-configure.log" cmake -S "$ZDIR" -B "$ZDIR/build" "${GENERATOR[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$ZDIR/toolchain.cmake"
run_logged "$WORK/zephyr-build.log" cmake --build "$ZDIR/build" --verbose
grep "interpreter.cc" "$WORK/zephyr-build.log" | grep -- "-imacros" | grep -q -- "-fno-threadsafe-statics" ||
  fail "zephyr: the module's flags were not applied (log: $WORK/zephyr-build.log)"
cp "$ZDIR/build/hello.elf" "$WORK/hello_zephyr.elf"
run_logged "$WORK/zephyr-hazard-configure.log" cmake -S "$ZDIR" -B "$ZDIR/build-hazard" \
  "${GENERATOR[@]}" -DCMAKE_TOOLCHAIN_FILE="$ZDIR/toolchain.cmake" -DHAZARD=ON
run_logged "$WORK/zephyr-hazard-build.log" cmake --build "$ZDIR/build-hazard"
cp "$ZDIR/build-hazard/hello.elf" "$WORK/hazard_zephyr.elf"
log "zephyr: zephyr/CMakeLists.txt library and the sample built with Zephyr's flags (-Werror), also with CONFIG_TFLM_VMCU_HAZARD_CHECKER=y: ok"

# ---------------------------------------------------------------------------------------
# mbed: Mbed OS 6 GCC_ARM (tools/cmake/toolchains/GCC_ARM.cmake, profiles/release.cmake,
# cores/Cortex-M4F.cmake), Mbed CLI 1's release profile extras, C++17 for this library.
MDIR="$WORK/mbed"
mkdir -p "$MDIR"
write_toolchain "$MDIR/toolchain.cmake" "-mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=softfp"
cat > "$MDIR/CMakeLists.txt" << EOF
cmake_minimum_required(VERSION 3.20)
project(tflm_vmcu_mbed_flags LANGUAGES C CXX)
set(FW "$FW")
set(STUB "$STUB")
file(STRINGS "$WORK/mbed_sources.txt" MBED_SOURCES)
file(STRINGS "$WORK/mbed_includes.txt" MBED_INCLUDES)

add_library(mbed_flags INTERFACE)
target_compile_options(mbed_flags INTERFACE
  -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
  -fmessage-length=0 -fno-exceptions -ffunction-sections -fdata-sections -funsigned-char
  -fomit-frame-pointer -fno-builtin -fno-delete-null-pointer-checks -g3 -Os -g0
  "\$<\$<COMPILE_LANGUAGE:CXX>:-std=gnu++17;-fno-rtti;-Wvla;-Wno-register>")
target_compile_definitions(mbed_flags INTERFACE NDEBUG __CORTEX_M4 ARM_MATH_CM4 __FPU_PRESENT=1)

# The library as Mbed builds it: every source of the scan, every include folder of it.
add_library(tflm_vmcu_mbed STATIC \${MBED_SOURCES})
target_include_directories(tflm_vmcu_mbed PRIVATE \${MBED_INCLUDES})
target_link_libraries(tflm_vmcu_mbed PRIVATE mbed_flags)
target_compile_options(tflm_vmcu_mbed PRIVATE -Werror)

add_library(app STATIC ${SAMPLE}/src/main.cpp)
target_include_directories(app PRIVATE \${MBED_INCLUDES} \${STUB}/include)
target_link_libraries(app PRIVATE mbed_flags)
target_compile_options(app PRIVATE -Werror)
target_compile_definitions(app PRIVATE main=hello_vmcu_main)
add_library(board OBJECT \${STUB}/harness.cpp \${FW}/startup.c \${FW}/semihost.c)
add_executable(hello \$<TARGET_OBJECTS:board>)
target_link_libraries(hello PRIVATE app tflm_vmcu_mbed m)
$BOARD_LINK_CMAKE
EOF
run_logged "$WORK/mbed-configure.log" cmake -S "$MDIR" -B "$MDIR/build" "${GENERATOR[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$MDIR/toolchain.cmake"
run_logged "$WORK/mbed-build.log" cmake --build "$MDIR/build" --verbose
grep -q -- "-funsigned-char" "$WORK/mbed-build.log" || fail "mbed: flags not applied"
if arm-none-eabi-readelf -A "$MDIR/build/libtflm_vmcu_mbed.a" | grep -q "Tag_ABI_VFP_args: VFP registers"; then
  fail "mbed: the archive uses the hard-float ABI, expected softfp"
fi
cp "$MDIR/build/hello.elf" "$WORK/hello_mbed.elf"
log "mbed: the scanned sources built with Mbed OS 6 GCC_ARM release flags (softfp, -Werror): ok"

# ---------------------------------------------------------------------------------------
# package: cross-build, install, find_package from a consumer.
PKG="$WORK/package"
PREFIX="$WORK/prefix"
rm -rf "$PREFIX"
run_logged "$WORK/package-configure.log" cmake -S "$ROOT" -B "$PKG/build" "${GENERATOR[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DTFLM_VMCU_CPU=cortex-m4 -DCMAKE_BUILD_TYPE=MinSizeRel
run_logged "$WORK/package-build.log" cmake --build "$PKG/build"
run_logged "$WORK/package-install.log" cmake --install "$PKG/build" --prefix "$PREFIX"
(cd "$PREFIX" && find . -type f | sed 's|^\./||' | sort) > "$WORK/installed.txt"
expected_installed="include/tflm_vmcu/interpreter.h
include/tflm_vmcu/model.h
include/tflm_vmcu/status.h
include/tflm_vmcu/tensor.h
lib/cmake/tflm_vmcu/tflm_vmcuConfig.cmake
lib/cmake/tflm_vmcu/tflm_vmcuConfigVersion.cmake
lib/cmake/tflm_vmcu/tflm_vmcuTargets-minsizerel.cmake
lib/cmake/tflm_vmcu/tflm_vmcuTargets.cmake
lib/libtflm_vmcu.a"
[[ "$(cat "$WORK/installed.txt")" == "$expected_installed" ]] ||
  fail "package: installed files differ: $(tr '\n' ' ' < "$WORK/installed.txt")"

CONSUMER="$PKG/consumer"
mkdir -p "$CONSUMER"
cat > "$CONSUMER/CMakeLists.txt" << EOF
cmake_minimum_required(VERSION 3.18)
project(tflm_vmcu_consumer LANGUAGES C CXX)
set(FW "$FW")
set(STUB "$STUB")
find_package(tflm_vmcu 0.1 CONFIG REQUIRED)
add_library(board OBJECT \${STUB}/harness.cpp \${FW}/startup.c \${FW}/semihost.c)
add_executable(hello ${SAMPLE}/src/main.cpp \$<TARGET_OBJECTS:board>)
target_include_directories(hello PRIVATE \${STUB}/include)
target_compile_features(hello PRIVATE cxx_std_17)
target_compile_definitions(hello PRIVATE main=hello_vmcu_main)
target_compile_options(hello PRIVATE -Wall -Wextra -Werror)
target_link_libraries(hello PRIVATE tflm_vmcu::tflm_vmcu m)
$BOARD_LINK_CMAKE
EOF
run_logged "$WORK/consumer-configure.log" cmake -S "$CONSUMER" -B "$CONSUMER/build" \
  "${GENERATOR[@]}" -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DTFLM_VMCU_CPU=cortex-m4 \
  -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=MinSizeRel
run_logged "$WORK/consumer-build.log" cmake --build "$CONSUMER/build"
cp "$CONSUMER/build/hello.elf" "$WORK/hello_package.elf"
if cmake -S "$CONSUMER" -B "$CONSUMER/build-m7" "${GENERATOR[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DTFLM_VMCU_CPU=cortex-m7 \
  -DCMAKE_PREFIX_PATH="$PREFIX" > "$WORK/consumer-m7.log" 2>&1; then
  fail "package: a cortex-m7 consumer found the cortex-m4 library"
fi
grep -q "built for cortex-m4" "$WORK/consumer-m7.log" ||
  fail "package: the cortex-m7 consumer failed for another reason (log: $WORK/consumer-m7.log)"

# A parent project's add_subdirectory() (firmware/) installs nothing of the library.
run_logged "$WORK/firmware-configure.log" cmake -S "$FW" -B "$PKG/firmware" "${GENERATOR[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DTFLM_VMCU_CPU=cortex-m4
fw_install="$PKG/firmware/tflm_vmcu/cmake_install.cmake"
[[ -f "$fw_install" ]] || fail "package: $fw_install not generated"
! grep -q "tflm_vmcuTargets" "$fw_install" ||
  fail "package: add_subdirectory() of the library adds install rules to the parent"
# The Python build (SKBUILD, as scikit-build-core configures it) installs _runtime and the
# sources (tflm_vmcu/sources), no C++ library.
if pybind11_dir="$(python3 -m pybind11 --cmakedir 2> /dev/null)"; then
  run_logged "$WORK/skbuild-configure.log" cmake -S "$ROOT" -B "$PKG/skbuild" "${GENERATOR[@]}" \
    -DSKBUILD=ON -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$(command -v python3)"
  grep -q "_runtime" "$PKG/skbuild/cmake_install.cmake" || fail "package: SKBUILD has no _runtime"
  ! grep -Eq "tflm_vmcuTargets|include/tflm_vmcu|libtflm_vmcu" "$PKG/skbuild/cmake_install.cmake" ||
    fail "package: the Python build (SKBUILD) would install the C++ library into the wheel"
else
  SKIPPED+=("SKBUILD install rules (pybind11 not installed)")
fi
log "package: cmake --install, find_package(tflm_vmcu) consumer, core check, install guards: ok"

# ---------------------------------------------------------------------------------------
# qemu: run the three programs; same output expected from each.
if command -v qemu-system-arm > /dev/null; then
  for name in zephyr mbed package; do
    console="$WORK/hello_$name.console"
    status=0
    timeout 60 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
      -semihosting-config enable=on,target=native -kernel "$WORK/hello_$name.elf" \
      > "$console" 2>&1 || status=$?
    [[ $status -eq 0 ]] || fail "qemu: hello_$name exited with $status: $(cat "$console")"
    grep -q "^hello_vmcu: done$" "$console" || fail "qemu: hello_$name: $(cat "$console")"
    grep -q "plan yes" "$console" || fail "qemu: hello_$name ran without the ring plan"
    grep "^hello_vmcu: output" "$console" > "$WORK/hello_$name.outputs"
  done
  if ! cmp -s "$WORK/hello_zephyr.outputs" "$WORK/hello_mbed.outputs" ||
    ! cmp -s "$WORK/hello_zephyr.outputs" "$WORK/hello_package.outputs"; then
    fail "qemu: the three builds printed different outputs"
  fi
  status=0
  timeout 60 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -kernel "$WORK/hazard_zephyr.elf" \
    > "$WORK/hazard_zephyr.console" 2>&1 || status=$?
  if [[ $status -ne 0 ]] ||
    ! grep -Eq "^hazard_check: 0 hazards in [1-9][0-9]+ units" "$WORK/hazard_zephyr.console"; then
    fail "qemu: the hazard check failed ($status): $(cat "$WORK/hazard_zephyr.console")"
  fi
  log "qemu: hello_vmcu ran on mps2-an386 from all three builds, same outputs; 0 hazards: ok"
  sed 's/^/  /' "$WORK/hello_zephyr.console"
else
  SKIPPED+=("QEMU runs (qemu-system-arm not found)")
fi

for s in "${SKIPPED[@]+"${SKIPPED[@]}"}"; do log "skipped: $s"; done
log "all checks passed"
