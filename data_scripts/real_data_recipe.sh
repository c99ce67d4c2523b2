#!/usr/bin/env bash
# The paper's own experiment on the real data sets: RHD (3D labels) + FreiHAND (2D labels only)
# -> FreiHAND evaluation, trained without and with BMC. Every step is a `bmc` command:
#   1. convert RHD (right-hand crops) and FreiHAND's training split (2D labels only) to caches
#      at the preset's crop size;
#   2. fit the BMC limits on RHD's 3D labels only (benchmark v2's rule: 99% quantile intervals,
#      hulls keeping 99% of each joint's angles);
#   3. train `no_bmc` (RHD 3D + FreiHAND 2D) and `bmc` (the same + BMC), preset gpu by default;
#   4. predict FreiHAND's split -> OUT/<run>/pred.json (the server's submission format; the
#      778 vertices are zeros: this model predicts joints only);
#   5. where the split's labels are there (FreiHAND's 2022 evaluation archive ships
#      evaluation_xyz.json), score it as the server does -> OUT/<run>/scores.txt and pck.png.
#
# Usage: data_scripts/real_data_recipe.sh RHD_ROOT FREIHAND_ROOT OUT [PRESET] [SPLIT]
#   PRESET  tiny | cpu | gpu (default gpu, the paper's ResNet-50 at 128 px)
#   SPLIT   the FreiHAND split to predict (default evaluation)
# Environment: BMC (default "python -m bmclib.cli"), STEPS (override the preset's steps),
# DEVICE (default: cuda when available).
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n 2,19p "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
RHD=$1 FH=$2 OUT=$3 PRESET=${4:-gpu} SPLIT=${5:-evaluation}
BMC=${BMC:-python -m bmclib.cli}
SIZE=$(python -c "from bmclib.train import preset; print(preset('$PRESET').image_size)")
EXTRA=()
[ -n "${STEPS:-}" ] && EXTRA+=(--steps "$STEPS")
[ -n "${DEVICE:-}" ] && EXTRA+=(--device "$DEVICE")

step() { echo; echo "== $*"; }
step "1. caches at $SIZE px"
$BMC prepare-rhd "$RHD" --out "$OUT/cache/rhd_training" --split training --size "$SIZE"
$BMC prepare-freihand "$FH" --out "$OUT/cache/freihand_training_2d" --split training --labels 2d --size "$SIZE"
step "2. limits fitted on RHD's 3D labels"
$BMC fit-limits "$OUT/cache/rhd_training" --out "$OUT/limits_rhd.json" --coverage 0.99 --interval-coverage 0.99
for run in no_bmc bmc; do
    step "3. train $run (preset $PRESET)"
    flag=()
    [ "$run" = bmc ] && flag=(--bmc)
    $BMC train --preset "$PRESET" --source "$OUT/cache/rhd_training" --weak "$OUT/cache/freihand_training_2d" \
        --limits "$OUT/limits_rhd.json" --name "$run" --out "$OUT/runs" "${flag[@]}" "${EXTRA[@]}"
    step "4. predict FreiHAND $SPLIT with $run"
    mkdir -p "$OUT/$run"
    $BMC predict-freihand "$OUT/runs/$run" "$FH" --split "$SPLIT" --out "$OUT/$run/pred.json"
    if [ -f "$FH/${SPLIT}_xyz.json" ]; then
        step "5. score $run on FreiHAND $SPLIT"
        $BMC eval-freihand "$FH" "$OUT/$run/pred.json" --split "$SPLIT" --out "$OUT/$run"
    else
        echo "no $FH/${SPLIT}_xyz.json: submit $OUT/$run/pred.json to the FreiHAND server"
    fi
done
