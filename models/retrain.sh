#!/usr/bin/env bash
# Retrains the built-in model from its sources (MODEL.md) and packs it into models/default.
# About 80 minutes on a 2-core machine: version 2's recipe (3.5 minutes to render, an hour to
# train), then a fine-tune on new songs, most of them bare lines (3 minutes to render, 15 to
# train). Needs the Debian packages named in models/libraries.toml; it runs
# models/fetch-libraries.sh and writes instrec's own sung-vowel library itself. OUT (default
# runs/default) holds the corpora and the runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/runs/default}
bin=${INSTREC:-$root/target/release/instrec}
seed=12
"$root/models/fetch-libraries.sh"
"$bin" synth-voices --out "$root/models/libs/instrec-voices" --seed 1
"$bin" synth --libraries "$root/models/libraries.toml" --libraries "$root/models/libraries-voices.toml" \
  --perform --augment \
  --train-per-class 320 --test-clips 60 --seed "$seed" --out "$out/data"
"$bin" train --data "$out/data" --arch resnet18 --init random --seed "$seed" \
  --max-epochs 28 --warmup-epochs 2 --patience 28 --mix --out "$out/run"
# Version 3: six more epochs on new songs (another seed, so none was heard or validated on
# before), 80 % of them bare lines without chords, bass or drums (`--solo 0.8`), mixed with
# partners of the same drum tag (so bare lines mostly with bare lines).
"$bin" synth --libraries "$root/models/libraries.toml" --libraries "$root/models/libraries-voices.toml" \
  --perform --augment --solo 0.8 \
  --train-per-class 320 --test-clips 60 --seed "$((seed + 1))" --out "$out/bare-data"
"$bin" train --data "$out/bare-data" --arch resnet18 --init "$out/run" --seed "$((seed + 1))" \
  --lr 1e-4 --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --mix-partners drums --out "$out/fine-tune"
"$bin" evaluate --model "$out/fine-tune" --data "$out/data" --out "$out/fine-tune/eval"
"$bin" evaluate --model "$out/fine-tune" --data "$out/data" --aggregation s2 --out "$out/fine-tune/eval-s2"
"$bin" pack --model "$out/fine-tune" --aggregation s2 --out "$root/models/default"
if [ -d "$root/../shared/real-dev" ]; then
  "$bin" evaluate --model "$root/models/default" --recordings "$root/../shared/real-dev" \
    --out "$out/real-dev"
fi
