#!/usr/bin/env bash
# Validation on sample libraries left out of training (`train --val-data`, issue 21) against the
# paper's 15 % split of the training corpus. Both arms train a ResNet18 from random weights (the
# built-in model's recipe, shortened) on one corpus rendered from models/libraries.toml without
# TimGM6mb; "split" validates on 15 % of it, "heldout" trains on all of it and validates on a corpus
# rendered from TimGM6mb and models/libraries-tonejs.toml, libraries it never hears. The validation
# set picks the kept epoch and the thresholds. Each model is then scored on its own synthetic test
# set and on real solo recordings and seeded mixtures of them (`instrec evaluate --recordings`).
#
#   experiments/heldout_validation.sh RECORDINGS_DIR [OUT_DIR]
#
# Needs Debian's fluid-soundfont-gm, musescore-general-soundfont-lossless, timgm6mb-soundfont and
# freepats, and models/fetch-libraries.sh run once. PER_CLASS, VAL_PER_CLASS, EPOCHS and SEED
# override the defaults below.
set -euo pipefail
rec=${1:?usage: heldout_validation.sh RECORDINGS_DIR [OUT_DIR]}
out=${2:-runs/heldout-validation}
per_class=${PER_CLASS:-60}
val_per_class=${VAL_PER_CLASS:-15}
epochs=${EPOCHS:-15}
seed=${SEED:-1}
bin=${INSTREC:-target/release/instrec}
models=$(cd "$(dirname "$0")/../models" && pwd)
mkdir -p "$out"
export INSTREC_CACHE="$out/cache"
# The two library lists, their relative paths made absolute (they are relative to the list).
python3 - "$models" "$out" <<'PY'
import pathlib, re, sys
models, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def entries(name):
    text = (models / name).read_text()
    return ["[[library]]" + re.sub(r'path = "(?!/)', f'path = "{models}/', e)
            for e in text.split("[[library]]")[1:]]
listed, tonejs = entries("libraries.toml"), entries("libraries-tonejs.toml")
(out / "train.toml").write_text("".join(e for e in listed if "TimGM6mb" not in e))
(out / "val.toml").write_text("".join([e for e in listed if "TimGM6mb" in e] + tonejs))
PY
[ -f "$out/train-data/instrec-synth.json" ] ||
  "$bin" synth --libraries "$out/train.toml" --perform --augment --train-per-class "$per_class" \
    --test-clips 40 --seed "$seed" --out "$out/train-data"
[ -f "$out/val-data/instrec-synth.json" ] ||
  "$bin" synth --libraries "$out/val.toml" --perform --augment --train-per-class "$val_per_class" \
    --test-clips 1 --seed "$((seed + 1000))" --out "$out/val-data"
run() { # name, train flags...
  local name=$1; shift
  if [ ! -f "$out/$name/run/summary.json" ]; then
    "$bin" train --data "$out/train-data" --arch resnet18 --init random --seed "$seed" \
      --max-epochs "$epochs" --warmup-epochs 2 --patience "$epochs" --mix --out "$out/$name/run" "$@"
  fi
  "$bin" evaluate --model "$out/$name/run" --data "$out/train-data" --aggregation s2 \
    --out "$out/$name/test" > "$out/$name/test.md"
  "$bin" evaluate --model "$out/$name/run" --recordings "$rec" --aggregation s2 \
    --out "$out/$name/recordings" > "$out/$name/recordings.md"
}
run split
run heldout --val-data "$out/val-data"
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| validation | kept epoch | s2 threshold (mixtures) | synthetic test micro-F1 (s2, calibrated) "
      "| real solo top-1 | real mixtures LRAP | real mixtures micro-F1 |")
print("|---|---|---|---|---|---|---|")
for name in ["split", "heldout"]:
    summary = json.loads((out / name / "run" / "summary.json").read_text())
    bundle = json.loads((out / name / "run" / "model" / "config.json").read_text())
    test = json.loads((out / name / "test" / "report.json").read_text())
    rows = {r["kind"]: r["metrics"]["micro"]["f1"] for r in test["results"]}
    r = json.loads((out / name / "recordings" / "report.json").read_text())
    s2 = bundle["thresholds_s2"]["mixture"]["global"]
    print(f"| {name} | {summary['best_epoch']} | {s2:.2f} | "
          f"{rows['mixture-calibrated (global)']:.3f} (oracle {rows['test-oracle']:.3f}) | "
          f"{r['solo_top1']:.3f} | {r['mixture_lrap']:.3f} | {r['mixture_micro']['f1']:.3f} |")
PY
