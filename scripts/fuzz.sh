#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs them side by side:
#
#  - fuzz_interpreter: whole model files through the model reader, plan reader and
#    interpreter, seeded with the committed models and their compiled forms (and
#    ../shared/models when present);
#  - fuzz_plan: compiled models whose 'tflm_vmcu.plan' entry is replaced by the fuzz input;
#    a plan that AllocateTensors accepts must run without a hazard, keep every model output
#    intact and give the outputs of the model's own plan (the plan verifier's promise).
#
# Prints executions and crashes per target; exits 1 if either found one.
#
#   scripts/fuzz.sh [RUNS] [SECONDS]   (per target: at most RUNS executions, default
#                                       1,000,000, and at most SECONDS, default no limit;
#                                       CI runs 100000 150)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
seconds=${2:-0}
out=${FUZZ_DIR:-build/fuzz}
mkdir -p "$out/corpus" "$out/seeds" "$out/plan_corpus" "$out/plan_seeds" "$out/plan_models"
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
flags=(-std=c++17 -g -Icpp/include -Icpp/src)
# fuzz_interpreter: everything instrumented for coverage.
clang++ "${flags[@]}" -O1 -fsanitize=fuzzer "${san[@]}" cpp/src/*.cc cpp/src/kernels/*.cc \
  cpp/fuzz/fuzz_interpreter.cc -o "$out/fuzz_interpreter" &
builds=($!)
# fuzz_plan: coverage on the model reader, interpreter and plan verifier; the kernels and
# the hazard checker (where an accepted plan spends its time) run uninstrumented at -O2,
# still under the sanitizers.
build_plan() {
  local obj="$out/obj_plan" f
  mkdir -p "$obj"
  for f in cpp/src/*.cc cpp/fuzz/fuzz_plan.cc; do
    if [[ $f == cpp/src/ring.cc ]]; then continue; fi
    clang++ "${flags[@]}" -O1 -fsanitize=fuzzer-no-link "${san[@]}" -c "$f" -o "$obj/$(basename "$f" .cc).o"
  done
  for f in cpp/src/kernels/*.cc cpp/src/ring.cc; do
    clang++ "${flags[@]}" -O2 "${san[@]}" -c "$f" -o "$obj/k_$(basename "$f" .cc).o"
  done
  clang++ -fsanitize=fuzzer "${san[@]}" "$obj"/*.o -o "$out/fuzz_plan"
}
build_plan &
builds+=($!)
for pid in "${builds[@]}"; do wait "$pid"; done
# Seeds: small models as they are and compiled with a ring plan (plan reader coverage).
for m in models/op_*.tflite models/dscnn_kws.tflite models/resnet8.tflite; do
  cp "$m" "$out/seeds/"
  tflm-vmcu compile "$m" -o "$out/seeds/vmcu_$(basename "$m")" > /dev/null
done
# Models with fused inverted-bottleneck blocks (fused-block table coverage), rows and
# window mode; then the plan fuzzer's models (every compiled seed) and its seeds (byte 0
# picks the model in name order, the rest is its plan). Run from the fuzz directory: the
# installed package, not the source tree in the working directory.
seeds="$(cd "$out/seeds" && pwd)"
plan_models="$(cd "$out/plan_models" && pwd)"
plan_seeds="$(cd "$out/plan_seeds" && pwd)"
max_plan=$( (cd "$seeds" && python3 - "$seeds" "$plan_models" "$plan_seeds") <<'PY'
import dataclasses
import shutil
import sys
from pathlib import Path

import tflm_vmcu
from tflm_vmcu.fusion import Chain, find_blocks
from tflm_vmcu.plan_format import PLAN_METADATA, write_plan
from tflm_vmcu.planner.fused import plan_with_blocks
from tflm_vmcu.synth import ModelBuilder

seeds, models, plan_seeds = (Path(p) for p in sys.argv[1:4])
b = ModelBuilder(seed=1)
x = b.conv2d(b.input([1, 6, 6, 3]), 8, (3, 3))
y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 24, (1, 1)), 1), 8, (1, 1))
data = b.build([b.elementwise("ADD", x, y)])
graph = tflm_vmcu.read_model(data)
for window in (False, True):
    blocks = [dataclasses.replace(k, window=window) for k in find_blocks(graph)]
    name = f"vmcu_block_{'window' if window else 'rows'}.tflite"
    seeds.joinpath(name).write_bytes(write_plan(data, plan_with_blocks(graph, blocks)))
# A chain of two blocks, the first with a 3x3 (stem) expansion.
b = ModelBuilder(seed=2)
x = b.conv2d(b.input([1, 9, 9, 3]), 8, (3, 3), (2, 2))
x = b.conv2d(b.depthwise_conv2d(x, 1), 8, (1, 1))
y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 16, (1, 1)), 1), 8, (1, 1))
chained = b.build([b.elementwise("ADD", x, y)])
graph = tflm_vmcu.read_model(chained)
for window in (False, True):
    chain = Chain(tuple(find_blocks(graph)), window=window)
    name = f"vmcu_chain_{'window' if window else 'rows'}.tflite"
    seeds.joinpath(name).write_bytes(write_plan(chained, plan_with_blocks(graph, [chain])))
longest = 0
for k, path in enumerate(sorted(seeds.glob("vmcu_*.tflite"), key=lambda p: p.name)):
    shutil.copy(path, models / path.name)
    plan = tflm_vmcu.read_model(path.read_bytes()).metadata[PLAN_METADATA]
    plan_seeds.joinpath(f"plan_{k:02d}_{path.stem}").write_bytes(bytes([k]) + plan)
    longest = max(longest, len(plan))
print(longest + 1)
PY
)
if [[ -d ../shared/models ]]; then cp ../shared/models/*.tflite "$out/seeds/"; fi

common=(-runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096
  -print_final_stats=1)
"$out/fuzz_interpreter" "$out/corpus" "$out/seeds" "${common[@]}" -max_len=400000 \
  -artifact_prefix="$out/interpreter-" > "$out/fuzz.log" 2>&1 &
interpreter=$!
FUZZ_PLAN_MODELS="$plan_models" "$out/fuzz_plan" "$out/plan_corpus" "$out/plan_seeds" \
  "${common[@]}" -max_len="$max_plan" -artifact_prefix="$out/plan-" > "$out/fuzz_plan.log" 2>&1 &
plan=$!

failed=0
report() {  # name, log, exit status
  local execs crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$2" | grep -o '[0-9]*$' | head -1 || true)
  crashes=$(grep -c -E 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error:|^fuzz_plan: .*: accepted plan' "$2" || true)
  echo "$1: ${execs:-0} executions, ${crashes} crashes (exit $3; log: $2)"
  if [[ $3 -ne 0 || $crashes -ne 0 ]]; then
    grep -E '^fuzz_plan: |Test unit written|SUMMARY' "$2" || true
    tail -30 "$2"
    failed=1
  fi
}
set +e
wait $interpreter
status=$?
report fuzz_interpreter "$out/fuzz.log" $status
wait $plan
status=$?
report fuzz_plan "$out/fuzz_plan.log" $status
exit $failed
