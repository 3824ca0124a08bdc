#!/usr/bin/env bash
# Why does torch eager's step-level Dropout(0) effect on the mlp (+2.1%, CI 1.0-3.2%, reference report)
# exceed what two calls at the dose-response's 5.3 µs predict (0.7%)? Four measurements, one process
# at a time on an idle machine (README: Findings). Writes the JSON records and the printed output here.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=reports/dropout0-step-vs-percall
run() { local name=$1; shift; echo "== $name: python -m harness $*" | tee "$out/$name.txt"
        python -m harness "$@" --json "$out/$name.json" 2>&1 | grep -v "^I0000\|^WARNING: All log" | tee -a "$out/$name.txt"; }
# 1. Step level, as the reference suite measures it: the two dropout layers at rate 0 against none, with an A/A control.
run step-spread time --backend torch --model mlp --variant dropout=absent --variant dropout=0 --aa --budget 120
# 2. Step level, the same two layers stacked right after the first dense layer (where percall puts its copies).
run step-stacked time --backend torch --spec $out/mlp-stacked.json --variant dropout=absent --variant baseline --aa --budget 120
# 3. Dose-response at low doses: does the first call cost more than the 32nd?
run percall-low percall --backend torch --model mlp --layer dropout=0 --copies 0,1,2,4 --budget 120
# 4. Dose-response as the reference suite measures it.
run percall-high percall --backend torch --model mlp --layer dropout=0 --copies 0,32,64,128 --budget 120
