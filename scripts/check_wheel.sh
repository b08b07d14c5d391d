#!/usr/bin/env bash
# The package as `pip install` gives it, outside any checkout: builds the wheel, installs it
# into a new virtual environment, then from an empty folder runs
#   tflm-vmcu firmware MODEL --cpu cortex-m4 --run --json    (must be bit-exact)
# from the sources the wheel carries, checks that `tflm-vmcu fit` (the prediction, from the
# figures the wheel carries) gives that run's RAM within 2%, and builds a two-line CMake
# project that finds the runtime with find_package(tflm_vmcu) through `tflm-vmcu --cmake-dir`.
#
# Usage: scripts/check_wheel.sh [WORK_DIR]   (needs arm-none-eabi-gcc, CMake, qemu-system-arm)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK/wheel" "$WORK/run" "$WORK/consumer"

python3 -m pip wheel --quiet --no-deps "$ROOT" -w "$WORK/wheel"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet "$WORK"/wheel/*.whl
tool="$WORK/venv/bin/tflm-vmcu"

cd "$WORK/run"  # no checkout here: the firmware sources come from the wheel
env -u TFLM_VMCU_SOURCE_DIR "$tool" firmware "$ROOT/models/op_add.tflite" --cpu cortex-m4 \
  --run --json --out "$WORK/run/fw" > firmware.json
"$WORK/venv/bin/python" - firmware.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["bit_exact"] is True, r["verdict"]
print(f"wheel: firmware bit-exact on {r['cpu']}, {r['ram_bytes']:,} bytes of RAM")
PY
"$tool" fit "$ROOT/models/op_add.tflite" --ram 64K --json > fit.json
"$WORK/venv/bin/python" - firmware.json fit.json <<'PY'
import json, sys
measured, fit = (json.load(open(p)) for p in sys.argv[1:])
assert fit["fits"] is True and fit["method"] == "predicted", fit
assert abs(fit["ram_bytes"] - measured["ram_bytes"]) <= 0.02 * measured["ram_bytes"], fit
print(f"wheel: fit predicts {fit['ram_bytes']:,} bytes of RAM")
PY

cat > "$WORK/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(consumer CXX)
find_package(tflm_vmcu CONFIG REQUIRED)
add_executable(app main.cc)
target_link_libraries(app PRIVATE tflm_vmcu::tflm_vmcu m)
CMAKE
cat > "$WORK/consumer/main.cc" <<'CC'
#include <stdio.h>
#include "tflm_vmcu/interpreter.h"
alignas(16) static uint8_t memory[4096];
alignas(16) static const uint8_t not_a_model[16] = {};
int main() {
  tflm_vmcu::Interpreter interp(not_a_model, sizeof(not_a_model), memory, sizeof(memory));
  return interp.AllocateTensors() != tflm_vmcu::Status::kOk ? 0 : 1;
}
CC
cmake -S "$WORK/consumer" -B "$WORK/consumer/build" -Dtflm_vmcu_DIR="$("$tool" --cmake-dir)" > /dev/null
cmake --build "$WORK/consumer/build" -j2 > /dev/null
"$WORK/consumer/build/app"
echo "wheel: find_package(tflm_vmcu) through --cmake-dir: ok ($("$tool" --cmake-dir))"
