#!/usr/bin/env bash
# Which parts of the synthetic corpus make a model hear real instruments (issue 21's ablation):
# one SoundFont or three, with or without the recording-chain augmentation. Each corpus trains a
# ResNet18 from random weights with the paper's recipe, shortened; each model is then scored on
# real solo recordings and seeded mixtures of them (`instrec evaluate --recordings`).
#
#   experiments/domain_ablation.sh RECORDINGS_DIR [OUT_DIR]
#
# Needs Debian's fluid-soundfont-gm, musescore-general-soundfont-lossless and timgm6mb-soundfont
# (/usr/share/sounds/sf2). PER_CLASS, EPOCHS and SEED override the defaults below.
set -euo pipefail
rec=${1:?usage: domain_ablation.sh RECORDINGS_DIR [OUT_DIR]}
out=${2:-runs/domain-ablation}
per_class=${PER_CLASS:-60}
epochs=${EPOCHS:-20}
seed=${SEED:-1}
bin=${INSTREC:-target/release/instrec}
sf=/usr/share/sounds/sf2
three=(--soundfont "$sf/FluidR3_GM.sf2" --soundfont "$sf/MuseScore_General_Full.sf2" --soundfont "$sf/TimGM6mb.sf2")
mkdir -p "$out"
export INSTREC_CACHE="$out/cache"
run() { # name, synth flags...
  local name=$1; shift
  if [ ! -f "$out/$name/run/summary.json" ]; then
    "$bin" synth --out "$out/$name/data" --train-per-class "$per_class" --test-clips 20 --seed "$seed" "$@"
    "$bin" train --data "$out/$name/data" --arch resnet18 --init random --seed "$seed" \
      --max-epochs "$epochs" --warmup-epochs 2 --patience "$epochs" --out "$out/$name/run"
  fi
  "$bin" evaluate --model "$out/$name/run" --recordings "$rec" --out "$out/$name/recordings" \
    > "$out/$name/recordings.md"
}
run fluid-only --soundfont "$sf/FluidR3_GM.sf2"
run three-libraries "${three[@]}"
run fluid-augmented --soundfont "$sf/FluidR3_GM.sf2" --augment
run three-augmented "${three[@]}" --augment
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| corpus | solo top-1 | class-mean top-1 | mixtures LRAP | micro-F1 (default thresholds) |")
print("|---|---|---|---|---|")
for name in ["fluid-only", "three-libraries", "fluid-augmented", "three-augmented"]:
    r = json.loads((out / name / "recordings" / "report.json").read_text())
    print(f"| {name} | {r['solo_top1']:.3f} | {r['solo_top1_class_mean']:.3f} | "
          f"{r['mixture_lrap']:.3f} | {r['mixture_micro']['f1']:.3f} |")
PY
