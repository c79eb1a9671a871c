# Steps the fine-tune experiments share (level.sh, more_libraries.sh and chords.sh source this).

# Sets rec (RECORDINGS_DIR), out (OUT_DIR, made), bin (the instrec binary: $INSTREC or the release
# build), models (the models/ folder), arms ($ARMS or the default) and the feature cache in out.
experiment_args() { # USAGE DEFAULT_OUT DEFAULT_ARMS RECORDINGS_DIR [OUT_DIR]
  rec=$(cd "${4:?usage: $1 RECORDINGS_DIR [OUT_DIR]}" && pwd)
  out=${5:-$2}
  bin=$(realpath "${INSTREC:-target/release/instrec}")
  models=$(cd "$(dirname "${BASH_SOURCE[0]}")/../models" && pwd)
  arms=${ARMS:-$3}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  export INSTREC_CACHE="$out/cache"
}

# The bare lines of Csound's General-MIDI bank, which no model here trained on, as CLASS__NAME
# recordings in DIR/recordings (12 solos per class, seed 2002).
csound_bare() { # DIR
  local bare=$1 d c f
  [ -d "$bare/recordings" ] && return 0
  "$bin" synth --libraries "$models/libraries-heldout.toml" --perform --augment --solo 1 \
    --train-per-class 12 --test-clips 1 --seed 2002 --out "$bare/data"
  mkdir -p "$bare/recordings"
  for d in "$bare"/data/IRMAS-TrainingData/*/; do
    c=$(basename "$d")
    for f in "$d"*.wav; do cp "$f" "$bare/recordings/${c}__$(basename "$f" | tr -d '[] ')"; done
  done
}

# `evaluate --recordings` (s2, 400 mixtures) of MODEL on each NAME:DIR set, into EVAL/NAME,
# skipping sets already scored.
evaluate_sets() { # MODEL EVAL NAME:DIR...
  local model=$1 e=$2 set
  shift 2
  mkdir -p "$e"
  for set in "$@"; do
    [ -f "$e/${set%%:*}/report.json" ] ||
      "$bin" evaluate --model "$model" --recordings "${set#*:}" --aggregation s2 --mixtures 400 \
        --out "$e/${set%%:*}" > /dev/null
  done
}

# The bundle an arm's name stands for: the built-in model for "builtin", else $out/NAME.
arm_model() { # NAME
  if [ "$1" = builtin ]; then echo "$models/default"; else echo "$out/$1"; fi
}

# A markdown row of EVAL's real and bare report.json: solo top-1, mixture LRAP and F1 of each
# (and, with "wide", the real mixtures' oracle F1 and instruments named per mixture).
report_row() { # EVAL NAME [wide]
  python3 - "$@" <<'PY'
import json, sys
e, name, wide = sys.argv[1], sys.argv[2], len(sys.argv) > 3
real, bare = (json.load(open(f"{e}/{k}/report.json")) for k in ("real", "bare"))
cells = [name, real["solo_top1"], real["mixture_lrap"], real["mixture_micro"]["f1"]]
if wide:
    cells += [real["mixture_oracle_f1"], f"{real['mixture_predicted']:.2f}"]
cells += [bare["solo_top1"], bare["mixture_lrap"], bare["mixture_micro"]["f1"]]
print("| " + " | ".join(c if isinstance(c, str) else f"{c:.3f}" for c in cells) + " |")
PY
}
