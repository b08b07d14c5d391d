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
if [[ -d ../shared/models ]]; then cp ../shared/models/*.tflite "$out/seeds/"; fi
log="$out/fuzz.log"
set +e
"$out/fuzz_interpreter" "$out/corpus" "$out/seeds" -runs="$runs" -max_len=400000 \
  -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 > "$log" 2>&1
status=$?
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
crashes=$(grep -c -E 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error:' "$log" || true)
echo "fuzz: ${execs} executions, ${crashes} crashes (exit ${status}; log: ${log})"
if [[ $status -ne 0 || $crashes -ne 0 ]]; then
  tail -40 "$log"
  exit 1
fi
