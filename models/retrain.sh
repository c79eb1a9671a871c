#!/usr/bin/env bash
# Retrains the built-in model from its sources (MODEL.md) and packs it into models/default.
# About an hour on a 2-core machine (3.5 minutes to render, 55 to train). Needs the Debian
# packages named in models/libraries.toml; it runs models/fetch-libraries.sh and writes instrec's
# own sung-vowel library itself. OUT (default runs/default) holds the corpus and the run.
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
"$bin" evaluate --model "$out/run" --data "$out/data" --out "$out/run/eval"
"$bin" evaluate --model "$out/run" --data "$out/data" --aggregation s2 --out "$out/run/eval-s2"
"$bin" pack --model "$out/run" --aggregation s2 --out "$root/models/default"
if [ -d "$root/../shared/real-dev" ]; then
  "$bin" evaluate --model "$root/models/default" --recordings "$root/../shared/real-dev" \
    --out "$out/real-dev"
fi
