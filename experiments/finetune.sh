#!/usr/bin/env bash
# One training flag at a time, as a fine-tune of the built-in model: each arm is version 4's
# fine-tune recipe (level augmentation, loudness-matched mixing, six epochs at lr 1e-4) on the
# same new songs (seed 16, 80 % bare) with its flag, scored alone and averaged with the built-in
# model (version 4's soup step, calibrated on the seed-15 songs), on real-dev (400 mixtures) and
# the Csound bank's bare lines. Arms: control (no flag), warp (`--spec-warp WARP`: each window's
# frequency axis scaled, a larger or smaller instrument body every epoch), asl (`--loss asl`:
# the asymmetric loss, easy negatives weigh less).
#
#     experiments/finetune.sh RECORDINGS_DIR [OUT_DIR]     (WARP=0.1 ARMS="control warp asl")
set -euo pipefail
. "$(dirname "$0")/common.sh"
experiment_args finetune.sh runs/finetune "control warp asl" "$@"
warp=${WARP:-0.1}
fine_tune_inputs
for s in 15 16; do
  case $s in 15) n=60 t=1 d=calibration ;; *) n=320 t=60 d=songs ;; esac
  [ -f "$out/$d/instrec-synth.json" ] ||
    "$bin" synth "${libs[@]}" --perform --augment --solo 0.8 --train-per-class $n \
      --test-clips $t --seed $s --out "$out/$d"
done

arm() { # name, extra train flags...
  local name=$1; shift
  case " $arms " in *" $name "*) ;; *) return 0 ;; esac
  [ -f "$out/$name/summary.json" ] ||
    "$bin" train --data "$out/songs" --arch resnet18 --init "$models/default" --seed 16 \
      --lr 1e-4 --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums \
      --spec-augment --spec-level-db 12 --spec-colour-db 0 --spec-freq-masks 0 \
      --spec-time-masks 0 --mix-match-level --calib-match-level "$@" --out "$out/$name"
  [ -f "$out/$name-soup/config.json" ] || {
    python3 "$(dirname "$0")/soup.py" "$out/$name-soup-f32" "$out/$name" "$models/default"
    "$bin" pack --model "$out/$name-soup-f32" --aggregation s2 \
      --calibrate-on "$out/calibration" --out "$out/$name-soup"
  }
}
arm control
arm warp --spec-warp "$warp"
arm asl --loss asl

printf '| model | real solos top-1 | mixtures LRAP | F1 | oracle F1 | predicted per mixture | Csound bare top-1 | LRAP | F1 |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
names=builtin
for a in $arms; do names="$names $a $a-soup"; done
for name in $names; do
  model=$(arm_model "$name")
  e=$out/eval/$name
  evaluate_sets "$model" "$e" "real:$rec" "bare:$bare/recordings"
  report_row "$e" "$name" wide
done
