#!/usr/bin/env bash
# Builds the libFuzzer target (clang, ASan + UBSan) and fuzzes the model reader, plan
# reader and interpreter, seeded with the committed models and their compiled forms
# (and ../shared/models when present). Prints executions and crashes.
#
#   scripts/fuzz.sh [RUNS]        (default 1,000,000; CI runs 100,000)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
out=${FUZZ_DIR:-build/fuzz}
mkdir -p "$out/corpus" "$out/seeds"
clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Icpp/include -Icpp/src cpp/src/*.cc cpp/src/kernels/*.cc cpp/fuzz/fuzz_interpreter.cc \
  -o "$out/fuzz_interpreter"
# Seeds: small models as they are and compiled with a ring plan (plan reader coverage).
for m in models/op_*.tflite models/dscnn_kws.tflite; do
  cp "$m" "$out/seeds/"
  tflm-vmcu compile "$m" -o "$out/seeds/vmcu_$(basename "$m")" > /dev/null
done
# A model with a fused inverted-bottleneck block (fused-block table coverage). Run from the
# fuzz directory: the installed package, not the source tree in the working directory.
seeds="$(cd "$out/seeds" && pwd)"
(cd "$seeds" && python3 - "$seeds/vmcu_block.tflite") <<'PY'
import sys
from pathlib import Path

import tflm_vmcu
from tflm_vmcu.fusion import find_blocks
from tflm_vmcu.plan_format import write_plan
from tflm_vmcu.planner.fused import plan_with_blocks
from tflm_vmcu.synth import ModelBuilder

b = ModelBuilder(seed=1)
x = b.conv2d(b.input([1, 6, 6, 3]), 8, (3, 3))
y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 24, (1, 1)), 1), 8, (1, 1))
data = b.build([b.elementwise("ADD", x, y)])
graph = tflm_vmcu.read_model(data)
Path(sys.argv[1]).write_bytes(write_plan(data, plan_with_blocks(graph, find_blocks(graph))))
PY
if [[ -d ../shared/models ]]; then cp ../shared/models/*.tflite "$out/seeds/"; fi
log="$out/fuzz.log"
set +e
"$out/fuzz_interpreter" "$out/corpus" "$out/seeds" -runs="$runs" -max_len=400000 \
  -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$out/" > "$log" 2>&1
status=$?
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
crashes=$(grep -c -E 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error:' "$log" || true)
echo "fuzz: ${execs} executions, ${crashes} crashes (exit ${status}; log: ${log})"
if [[ $status -ne 0 || $crashes -ne 0 ]]; then
  tail -40 "$log"
  exit 1
fi
