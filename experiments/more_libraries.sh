#!/usr/bin/env bash
# Do more recorded instruments help? (MODEL.md, "More libraries"). Two fine-tunes of the built-in
# bundle (models/default) with version 3's fine-tune recipe (models/retrain.sh) on new songs
# (seed 14, 80 % bare lines), differing only in the corpus's libraries:
#   control  models/libraries.toml + models/libraries-voices.toml, as version 3;
#   more     the same songs, with models/libraries-more.toml's instruments beside them (four
#            saxophones, a flute, two electric guitars, an archtop heard by microphone as the
#            acoustic guitar, a second grand piano).
# Each model (and the built-in one, "builtin") is scored, s2, on RECORDINGS_DIR (`evaluate
# --recordings`: solo top-1, 400 mixtures) and on the bare lines of Csound's General-MIDI bank,
# which no model here trained on (solos and 400 mixtures, as level.sh makes them).
#
#   experiments/more_libraries.sh RECORDINGS_DIR [OUT_DIR]
#
# Needs the libraries (models/fetch-libraries.sh and apt, Debian csound-soundfont too). About 15
# minutes per arm on a 2-core machine. ARMS="name ..." picks arms.
set -euo pipefail
. "$(dirname "$0")/common.sh"
experiment_args more_libraries.sh runs/more-libraries "control more" "$@"
[ -d "$models/libs/instrec-voices" ] || "$bin" synth-voices --out "$models/libs/instrec-voices" --seed 1
bare="$out/csound-bare"
csound_bare "$bare"

arm() { # name, extra library lists...
  local name=$1; shift
  case " $arms " in *" $name "*) ;; *) return 0 ;; esac
  local lists=(--libraries "$models/libraries.toml" --libraries "$models/libraries-voices.toml")
  for l in "$@"; do lists+=(--libraries "$models/$l"); done
  [ -f "$out/$name-data/instrec-synth.json" ] ||
    "$bin" synth "${lists[@]}" --perform --augment --solo 0.8 --train-per-class 320 \
      --test-clips 60 --seed 14 --out "$out/$name-data"
  [ -f "$out/$name/summary.json" ] ||
    "$bin" train --data "$out/$name-data" --arch resnet18 --init "$models/default" --seed 14 \
      --lr 1e-4 --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums \
      --out "$out/$name"
}
arm more libraries-more.toml
arm control

printf '| model | real solos top-1 | mixtures LRAP | F1 | Csound bare top-1 | LRAP | F1 |\n'
printf '|---|---|---|---|---|---|---|\n'
for name in builtin $arms; do
  e=$out/eval/$name
  evaluate_sets "$(arm_model "$name")" "$e" "real:$rec" "bare:$bare/recordings"
  report_row "$e" "$name"
done
