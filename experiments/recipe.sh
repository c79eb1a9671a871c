#!/usr/bin/env bash
# Version 4's whole recipe (models/retrain.sh: the first stage from scratch, version 3's and
# version 4's fine-tunes, the soup, thresholds calibrated on the seed-15 songs) with extra
# `synth` flags on every corpus, and each stage scored, s2 at its own thresholds: the first
# stage (run), version 3's stage (v3) and the packed soup (packed), on RECORDINGS_DIR (400
# mixtures), its loudness-matched 0-dB pairs (LRAP of the two labels, and how many pairs have
# both in the top two) and the Csound bank's bare lines, which no model here trained on.
#
#     experiments/recipe.sh RECORDINGS_DIR OUT_DIR [SYNTH_FLAG...]
#     experiments/recipe.sh ../shared/real-dev runs/counter --counter-lines 0.5
#     TRAIN_FLAGS=--label-chords experiments/recipe.sh ../shared/real-dev runs/labelled
#
# About 80 minutes on a 2-core machine (FETCH=0 when models/libs/ is in place).
set -euo pipefail
. "$(dirname "$0")/common.sh"
experiment_args recipe.sh runs/recipe "" "${1:-}" "${2:?usage: recipe.sh RECORDINGS_DIR OUT_DIR [SYNTH_FLAG...]}"
shift 2
[ -f "$out/packed/config.json" ] ||
  OUT="$out" PACKED="$out/packed" SYNTH_FLAGS="$*" INSTREC="$bin" "$models/retrain.sh"
level_copies "$rec" "$out/levels"
csound_bare "$out/csound-bare"
printf '| stage | real solos top-1 | mixtures LRAP | F1 | oracle F1 | predicted per mixture | Csound bare top-1 | LRAP | F1 | 0-dB pairs LRAP | both in the top two |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for stage in run v3 packed; do
  e=$out/eval/$stage
  evaluate_sets "$out/$stage" "$e" "real:$rec" "bare:$out/csound-bare/recordings"
  [ -f "$e/pairs+0.json" ] ||
    "$bin" tag --model "$out/$stage" "$out/levels/pairs+0" --format json > "$e/pairs+0.json"
  both=$(python3 "$(dirname "$0")/pair_report.py" "$e/pairs+0.json" | sed -n '1s/.*: //p')
  report_row "$e" "$stage" wide "$(pair_lrap "$e/pairs+0.json")" "$both"
done
