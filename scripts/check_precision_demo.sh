#!/usr/bin/env bash
# The precision gate (interpsharp check-precision) on every fine-tune of a demo world, on the CPU.
#
#   scripts/check_precision_demo.sh WORLD OUT     # WORLD from `interpsharp demo build --out WORLD`
#
# 1. OUT/path: the whole path on photo (ID) and clutter (main OOD), 1000 images each, alphas
#    with small ones, real bf16 against fp32, beside the two emulations (the delta form of bf16
#    and its control, plain bf16 emulated the same way). No sharpness.
# 2. OUT/sharpness: general and layer-wise sharpness at config/demo.yaml's settings (clutter,
#    500 images, rho 1 + sweep 0.1 0.5 with 5 draws; layer-wise rho 1, 3 draws, perturb_finetuned,
#    seed 0) at alpha 0.05 and 1, real bf16 and the delta form.
# 3. OUT/sharpness_control: layer-wise sharpness of the emulation's control at alpha 0.05.
# Each step writes path.tsv, labels.tsv, sharpness.tsv, verdicts.tsv and the printed summary
# (summary.txt). On 2 idle cores the three take roughly 10, 30 and 10 minutes.
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 WORLD OUT" >&2
  exit 2
fi
world=$1
out=$2
python=${PYTHON:-.venv/bin/python}
zeroshot=$world/models/zeroshot.pt
models=("$world"/models/finetuned/model_*.pt)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE
mkdir -p "$out"

check() {
  local name=$1
  shift
  mkdir -p "$out/$name"
  "$python" -m interpsharp.cli check-precision "$zeroshot" "${models[@]}" --batch-size 500 --no-progress \
    -o "$out/$name" "$@" > "$out/$name/summary.txt"
  echo "wrote $out/$name"
}

check path --data "$world/data/photo" "$world/data/clutter" --alphas 0 0.02 0.05 0.1 0.2 0.5 1 \
  --candidates bf16 bf16_emulated bf16_delta_emulated --sharpness none
check sharpness --data "$world/data/clutter" --alphas 0 0.05 1 --candidates bf16 bf16_delta_emulated \
  --sharpness-data clutter --m 500 --rho 1 0.1 0.5 --n-iter 5 --layerwise-rho 1 --layerwise-n-iter 3 \
  --sharpness-alphas 0.05 1
check sharpness_control --data "$world/data/clutter" --alphas 0 0.05 1 --candidates bf16_emulated \
  --sharpness layerwise --sharpness-data clutter --m 500 --layerwise-rho 1 --layerwise-n-iter 3 \
  --sharpness-alphas 0.05
