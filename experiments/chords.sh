#!/usr/bin/env bash
# Does the unlabelled piano, organ or guitar under a line teach the model to drop the quieter of
# two instruments? Two fine-tunes of the built-in model with version 4's recipe (level
# augmentation, loudness-matched mixing, six epochs at lr 1e-4) on the same new songs (seed 16,
# SOLO of them bare), one with today's chords (a third of the programs are piano, organ or
# nylon guitar), one with `synth --neutral-chords` (electric piano, harp or pad only). Each is
# scored alone and averaged with the built-in model (version 4's soup step, calibrated on the
# seed-15 songs), on real-dev (400 mixtures), its loudness-matched 0-dB pairs and the Csound
# bank's bare lines. A third arm, "labelled", trains on the control's songs with
# `train --label-chords`: the piano, organ or nylon guitar of the chords is labelled too.
#
#     experiments/chords.sh RECORDINGS_DIR [OUT_DIR]     (SOLO=0.5 ARMS="control neutral labelled")
set -euo pipefail
. "$(dirname "$0")/common.sh"
experiment_args chords.sh runs/chords "control neutral labelled" "$@"
solo=${SOLO:-0.5}
fine_tune_inputs
[ -f "$out/calibration/instrec-synth.json" ] ||
  "$bin" synth "${libs[@]}" --perform --augment --solo 0.8 --train-per-class 60 --test-clips 1 \
    --seed 15 --out "$out/calibration"

arm() { # name, corpus name, "extra train flags", extra synth flags...
  local name=$1 data=$2 train_flags=$3; shift 3
  case " $arms " in *" $name "*) ;; *) return 0 ;; esac
  [ -f "$out/$data-data/instrec-synth.json" ] ||
    "$bin" synth "${libs[@]}" --perform --augment --solo "$solo" --train-per-class 320 \
      --test-clips 60 --seed 16 --out "$out/$data-data" "$@"
  # shellcheck disable=SC2086 # train_flags is a list of flags
  [ -f "$out/$name/summary.json" ] ||
    "$bin" train --data "$out/$data-data" --arch resnet18 --init "$models/default" --seed 16 \
      --lr 1e-4 --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums \
      --spec-augment --spec-level-db 12 --spec-colour-db 0 --spec-freq-masks 0 \
      --spec-time-masks 0 --mix-match-level --calib-match-level $train_flags --out "$out/$name"
  [ -f "$out/$name-soup/config.json" ] || {
    python3 "$(dirname "$0")/soup.py" "$out/$name-soup-f32" "$out/$name" "$models/default"
    "$bin" pack --model "$out/$name-soup-f32" --aggregation s2 \
      --calibrate-on "$out/calibration" --out "$out/$name-soup"
  }
}
arm control control ""
arm neutral neutral "" --neutral-chords
arm labelled control --label-chords

printf '| model | real solos top-1 | mixtures LRAP | F1 | oracle F1 | predicted per mixture | Csound bare top-1 | LRAP | F1 |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
names=builtin
for a in $arms; do names="$names $a $a-soup"; done
for name in $names; do
  case $name in builtin) model=$models/default ;; *) model=$out/$name ;; esac
  e=$out/eval/$name
  evaluate_sets "$model" "$e" "real:$rec" "bare:$bare/recordings"
  report_row "$e" "$name" wide
done
