# Steps the fine-tune experiments share (level.sh, more_libraries.sh source this); they expect
# $bin (the instrec binary) and $models (the models/ folder).

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
