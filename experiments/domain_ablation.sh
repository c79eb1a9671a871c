#!/usr/bin/env bash
# Which parts of the synthetic corpus make a model hear real instruments (issue 21's ablation):
# libraries (one SoundFont, three, or models/libraries.toml's General-MIDI SoundFonts with
# one-class SFZ instruments and GUS patches, then with models/libraries-tonejs.toml's recorded
# orchestral notes too), acoustics (the recording-chain augmentation),
# performance (`synth --perform`), solo songs without accompaniment (`synth --solo`), mixing (`train --mix`) and log-mel augmentation
# (`train --spec-augment`). Each corpus trains a ResNet18 from
# random weights with the paper's recipe, shortened; each model is then scored on real solo
# recordings and seeded mixtures of them (`instrec evaluate --recordings`).
#
#   experiments/domain_ablation.sh RECORDINGS_DIR [OUT_DIR]
#
# Needs Debian's fluid-soundfont-gm, musescore-general-soundfont-lossless, timgm6mb-soundfont and
# freepats, models/fetch-libraries.sh run once, and for the voices arm
# `instrec synth-voices --out models/libs/instrec-voices --seed 1`. PER_CLASS, EPOCHS and SEED override the
# defaults below; ARMS="name ..." runs only those arms.
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
libraries=(--libraries "$(dirname "$0")/../models/libraries.toml")
tonejs=(--libraries "$(dirname "$0")/../models/libraries-tonejs.toml")
voices=(--libraries "$(dirname "$0")/../models/libraries-voices.toml")
arms=${ARMS:-"fluid-only three-libraries fluid-augmented three-augmented three-augmented-performed all-augmented all-augmented-performed all-augmented-performed-mixed tonejs-augmented-performed-mixed all-augmented-performed-mixed-specaugment all-augmented-performed-mixed-masks all-augmented-performed-mixed-colour voices-augmented-performed-mixed voices-augmented-performed-mixed-solo"}
train_extra=()
run() { # name, synth flags... (train_extra: flags for train)
  local name=$1; shift
  case " $arms " in *" $name "*) ;; *) return 0 ;; esac
  if [ ! -f "$out/$name/run/summary.json" ]; then
    "$bin" synth --out "$out/$name/data" --train-per-class "$per_class" --test-clips 20 --seed "$seed" "$@"
    "$bin" train --data "$out/$name/data" --arch resnet18 --init random --seed "$seed" \
      --max-epochs "$epochs" --warmup-epochs 2 --patience "$epochs" --out "$out/$name/run" \
      ${train_extra[@]+"${train_extra[@]}"}
  fi
  "$bin" evaluate --model "$out/$name/run" --recordings "$rec" --out "$out/$name/recordings" \
    > "$out/$name/recordings.md"
}
run fluid-only --soundfont "$sf/FluidR3_GM.sf2"
run three-libraries "${three[@]}"
run fluid-augmented --soundfont "$sf/FluidR3_GM.sf2" --augment
run three-augmented "${three[@]}" --augment
run three-augmented-performed "${three[@]}" --augment --perform
run all-augmented "${libraries[@]}" --augment
run all-augmented-performed "${libraries[@]}" --augment --perform
train_extra=(--mix)
run all-augmented-performed-mixed "${libraries[@]}" --augment --perform
run tonejs-augmented-performed-mixed "${libraries[@]}" "${tonejs[@]}" --augment --perform
run voices-augmented-performed-mixed "${libraries[@]}" "${voices[@]}" --augment --perform
run voices-augmented-performed-mixed-solo "${libraries[@]}" "${voices[@]}" --augment --perform --solo 0.5
train_extra=(--mix --spec-augment)
run all-augmented-performed-mixed-specaugment "${libraries[@]}" --augment --perform
train_extra=(--mix --spec-augment --spec-level-db 0 --spec-colour-db 0)
run all-augmented-performed-mixed-masks "${libraries[@]}" --augment --perform
train_extra=(--mix --spec-augment --spec-freq-masks 0 --spec-time-masks 0)
run all-augmented-performed-mixed-colour "${libraries[@]}" --augment --perform
train_extra=()
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| corpus | solo top-1 | class-mean top-1 | mixtures LRAP | micro-F1 (default thresholds) |")
print("|---|---|---|---|---|")
for name in ["fluid-only", "three-libraries", "fluid-augmented", "three-augmented",
             "three-augmented-performed", "all-augmented", "all-augmented-performed",
             "all-augmented-performed-mixed", "tonejs-augmented-performed-mixed",
             "all-augmented-performed-mixed-specaugment", "all-augmented-performed-mixed-masks",
             "all-augmented-performed-mixed-colour", "voices-augmented-performed-mixed",
             "voices-augmented-performed-mixed-solo"]:
    report = out / name / "recordings" / "report.json"
    if not report.exists():
        continue
    r = json.loads(report.read_text())
    print(f"| {name} | {r['solo_top1']:.3f} | {r['solo_top1_class_mean']:.3f} | "
          f"{r['mixture_lrap']:.3f} | {r['mixture_micro']['f1']:.3f} |")
PY
