#!/usr/bin/env bash
# How the built-in model's numbers depend on the input level, and two fine-tunes that ask whether
# training can take that dependence away (MODEL.md, "Input level"). Every arm is version 3's
# fine-tune recipe (models/retrain.sh) started from the built-in bundle (models/default, half
# floats) on new songs (seed 14, 80 % bare lines), so the arms differ only in one flag:
#   control  the recipe as it is (six more epochs of bare lines);
#   level    + `--spec-augment` with the level alone (±12 dB per window, no colour, no masks);
#   match    + `--mix-match-level --calib-match-level` (mixed windows and calibration mixtures
#            loudness-matched before their gains, as `evaluate --recordings` mixes recordings);
#   levelmatch  both (not in the default ARMS: session 2026-12-04 (2)).
# Each model (and the built-in one, "builtin") is scored, s2, on:
#   - RECORDINGS_DIR: `evaluate --recordings` (solo top-1, 400 mixtures);
#   - the same recordings played 20 and 10 dB quieter and 10 dB louder (solo top-1);
#   - every pair of recordings of two classes, loudness-matched and summed at −6, 0 and +6 dB,
#     played at −20, −10, 0 and +10 dB (LRAP of the two labels, `tag`);
#   the copies at other levels are scored as they are (`--no-boost-quiet`): the model's own
#   dependence on level, not what `tag`'s default raising of quiet files makes of it;
#   - bare lines of Csound's General-MIDI bank, which no model here trained on (solos and 400
#     mixtures, as bare_lines.sh makes them without the tonejs instruments).
#
#   experiments/level.sh RECORDINGS_DIR [OUT_DIR]
#
# Needs numpy, models/libraries.toml's libraries (models/fetch-libraries.sh and apt) and Debian
# csound-soundfont. About 15 minutes per arm on a 2-core machine. ARMS="name ..." picks arms.
set -euo pipefail
. "$(dirname "$0")/common.sh"
experiment_args level.sh runs/level "control level match" "$@"

level_copies "$rec" "$out/levels"

# The held-out library's bare lines, as CLASS__NAME recordings.
bare="$out/csound-bare"
csound_bare "$bare"

[ -f "$out/data/instrec-synth.json" ] ||
  "$bin" synth --libraries "$models/libraries.toml" --libraries "$models/libraries-voices.toml" \
    --perform --augment --solo 0.8 --train-per-class 320 --test-clips 60 --seed 14 --out "$out/data"
arm() { # name, extra train flags...
  local name=$1; shift
  case " $arms " in *" $name "*) ;; *) return 0 ;; esac
  [ -f "$out/$name/summary.json" ] ||
    "$bin" train --data "$out/data" --arch resnet18 --init "$models/default" --seed 14 --lr 1e-4 \
      --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums --out "$out/$name" "$@"
}
arm control
arm level --spec-augment --spec-level-db 12 --spec-colour-db 0 --spec-freq-masks 0 --spec-time-masks 0
arm match --mix-match-level --calib-match-level
arm levelmatch --spec-augment --spec-level-db 12 --spec-colour-db 0 --spec-freq-masks 0 \
  --spec-time-masks 0 --mix-match-level --calib-match-level

printf '| model | real solos top-1 | mixtures LRAP | F1 | solos −20 / −10 / +10 dB | pairs LRAP −20 / −10 / 0 / +10 dB | Csound bare top-1 | LRAP | F1 |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for name in builtin $arms; do
  model=$(arm_model "$name")
  e=$out/eval/$name
  evaluate_sets "$model" "$e" "real:$rec" "bare:$bare/recordings"
  for g in -20 -10 +10; do
    [ -f "$e/solo$g/report.json" ] ||
      "$bin" evaluate --model "$model" --recordings "$out/levels/solo$g" --aggregation s2 \
        --mixtures 1 --no-boost-quiet --out "$e/solo$g" > /dev/null
  done
  for g in -20 -10 +0 +10; do
    [ -f "$e/pairs$g.json" ] ||
      "$bin" tag --model "$model" "$out/levels/pairs$g" --no-boost-quiet --format json \
        > "$e/pairs$g.json"
  done
  pairs=""
  for g in -20 -10 +0 +10; do pairs="$pairs${pairs:+ / }$(pair_lrap "$e/pairs$g.json")"; done
  python3 - "$e" "$name" "$pairs" <<'PY'
import json, sys
e, name, pairs = sys.argv[1:]
def report(k):
    return json.load(open(f"{e}/{k}/report.json"))
real, bare = report("real"), report("bare")
solos = " / ".join(f"{report(f'solo{g}')['solo_top1']:.3f}" for g in ("-20", "-10", "+10"))
print(f"| {name} | {real['solo_top1']:.3f} | {real['mixture_lrap']:.3f} | "
      f"{real['mixture_micro']['f1']:.3f} | {solos} | {pairs} | {bare['solo_top1']:.3f} | "
      f"{bare['mixture_lrap']:.3f} | {bare['mixture_micro']['f1']:.3f} |")
PY
done
