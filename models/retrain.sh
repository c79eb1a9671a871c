#!/usr/bin/env bash
# Retrains the built-in model from its sources (MODEL.md) and packs it into models/default.
# About 100 minutes on a 2-core machine: version 2's recipe (3.5 minutes to render, an hour to
# train), a fine-tune on new songs, most of them bare lines (3 minutes to render, 15 to train),
# and version 4's level-proof fine-tune (3 and 10 minutes) averaged with it. Needs the Debian
# packages named in models/libraries.toml and python3 with numpy (experiments/soup.py); it runs
# models/fetch-libraries.sh and writes instrec's own sung-vowel library itself. OUT (default
# runs/default) holds the corpora and the runs. For experiments: SYNTH_FLAGS adds flags to every
# `synth` (e.g. --neutral-chords), TRAIN_FLAGS to every `train` (e.g. --label-chords), PACKED (default models/default) is where the model is packed,
# and FETCH=0 skips fetch-libraries.sh when models/libs/ is already in place.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/runs/default}
bin=${INSTREC:-$root/target/release/instrec}
packed=${PACKED:-$root/models/default}
read -r -a extra <<< "${SYNTH_FLAGS:-}"
read -r -a train_extra <<< "${TRAIN_FLAGS:-}"
seed=12
[ "${FETCH:-1}" = 0 ] || "$root/models/fetch-libraries.sh"
"$bin" synth-voices --out "$root/models/libs/instrec-voices" --seed 1
"$bin" synth --libraries "$root/models/libraries.toml" --libraries "$root/models/libraries-voices.toml" \
  --perform --augment "${extra[@]}" \
  --train-per-class 320 --test-clips 60 --seed "$seed" --out "$out/data"
"$bin" train --data "$out/data" --arch resnet18 --init random --seed "$seed" \
  --max-epochs 28 --warmup-epochs 2 --patience 28 --mix "${train_extra[@]}" --out "$out/run"
# Version 3: six more epochs on new songs (another seed, so none was heard or validated on
# before), 80 % of them bare lines without chords, bass or drums (`--solo 0.8`), mixed with
# partners of the same drum tag (so bare lines mostly with bare lines).
"$bin" synth --libraries "$root/models/libraries.toml" --libraries "$root/models/libraries-voices.toml" \
  --perform --augment --solo 0.8 "${extra[@]}" \
  --train-per-class 320 --test-clips 60 --seed "$((seed + 1))" --out "$out/bare-data"
"$bin" train --data "$out/bare-data" --arch resnet18 --init "$out/run" --seed "$((seed + 1))" \
  --lr 1e-4 --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums \
  "${train_extra[@]}" --out "$out/fine-tune"
"$bin" pack --model "$out/fine-tune" --aggregation s2 --out "$out/v3"
# Version 4: version 3 fine-tuned six epochs on other new songs (seed 14) with every window's
# level moved by up to ±12 dB and loudness-matched mixing, then the mean of those weights and
# version 3's (a two-model soup, experiments/soup.py), its thresholds calibrated on the clips
# of yet other new songs (seed 15) that neither trained on.
"$bin" synth --libraries "$root/models/libraries.toml" --libraries "$root/models/libraries-voices.toml" \
  --perform --augment --solo 0.8 "${extra[@]}" \
  --train-per-class 320 --test-clips 60 --seed "$((seed + 2))" --out "$out/level-data"
"$bin" train --data "$out/level-data" --arch resnet18 --init "$out/v3" --seed "$((seed + 2))" \
  --lr 1e-4 --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums \
  --spec-augment --spec-level-db 12 --spec-colour-db 0 --spec-freq-masks 0 --spec-time-masks 0 \
  --mix-match-level --calib-match-level "${train_extra[@]}" --out "$out/level-fine-tune"
python3 "$root/experiments/soup.py" "$out/soup" "$out/level-fine-tune" "$out/v3"
"$bin" synth --libraries "$root/models/libraries.toml" --libraries "$root/models/libraries-voices.toml" \
  --perform --augment --solo 0.8 "${extra[@]}" \
  --train-per-class 60 --test-clips 1 --seed "$((seed + 3))" --out "$out/calibration-data"
"$bin" pack --model "$out/soup" --aggregation s2 --calibrate-on "$out/calibration-data" \
  --out "$packed"
"$bin" evaluate --model "$packed" --data "$out/data" --out "$out/eval"
"$bin" evaluate --model "$packed" --data "$out/data" --aggregation s2 --out "$out/eval-s2"
if [ -d "$root/../shared/real-dev" ]; then
  "$bin" evaluate --model "$packed" --recordings "$root/../shared/real-dev" \
    --out "$out/real-dev"
fi
