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

# The Csound bank's bare lines in $out/csound-bare (as bare) and the built-in model's libraries
# as synth flags (as libs): what the fine-tune experiments render from and score on.
fine_tune_inputs() {
  bare="$out/csound-bare"
  csound_bare "$bare"
  libs=(--libraries "$models/libraries.toml" --libraries "$models/libraries-voices.toml")
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
# (and, with "wide", the real mixtures' oracle F1 and instruments named per mixture), then any
# EXTRA cells.
report_row() { # EVAL NAME [wide|narrow [EXTRA...]]
  python3 - "$@" <<'PY'
import json, sys
e, name = sys.argv[1], sys.argv[2]
wide, extra = sys.argv[3:4] == ["wide"], sys.argv[4:]
real, bare = (json.load(open(f"{e}/{k}/report.json")) for k in ("real", "bare"))
cells = [name, real["solo_top1"], real["mixture_lrap"], real["mixture_micro"]["f1"]]
if wide:
    cells += [real["mixture_oracle_f1"], f"{real['mixture_predicted']:.2f}"]
cells += [bare["solo_top1"], bare["mixture_lrap"], bare["mixture_micro"]["f1"]] + extra
print("| " + " | ".join(c if isinstance(c, str) else f"{c:.3f}" for c in cells) + " |")
PY
}

# Level-shifted copies of RECORDINGS_DIR's recordings (DIR/solo-20, solo-10, solo+10) and every
# pair of recordings of two classes, loudness-matched and summed at −6, 0 and +6 dB
# (DIR/pairs-20 … pairs+10, named A+B@REL.wav): 32-bit float WAV, no clipping, 22,050 Hz mono.
level_copies() { # RECORDINGS_DIR DIR
  [ -d "$2" ] || python3 - "$1" "$2" <<'PY'
import glob, itertools, os, struct, sys, wave
import numpy as np
src, dst = sys.argv[1:]
def read(f):
    with wave.open(f) as w:
        n, ch, sw, r = w.getnframes(), w.getnchannels(), w.getsampwidth(), w.getframerate()
        a = np.frombuffer(w.readframes(n), dtype={2: np.int16, 4: np.int32}[sw])
    a = a.astype(np.float64).reshape(-1, ch).mean(1) / 2 ** (8 * sw - 1)
    if r != 22050:  # linear interpolation: the level, not the bandwidth, is what is varied here
        a = np.interp(np.arange(int(len(a) * 22050 / r)) * r / 22050, np.arange(len(a)), a)
    return a
def write(path, a):
    data = a.astype("<f4").tobytes()
    head = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 3, 1,
                       22050, 22050 * 4, 4, 32, b"data", len(data))
    open(path, "wb").write(head + data)
clips = {os.path.basename(f)[:-4]: read(f) for f in sorted(glob.glob(f"{src}/*.wav"))}
for g in (-20, -10, 10):
    os.makedirs(f"{dst}/solo{g:+d}")
    for name, a in clips.items():
        write(f"{dst}/solo{g:+d}/{name}.wav", a * 10 ** (g / 20))
for g in (-20, -10, 0, 10):
    os.makedirs(f"{dst}/pairs{g:+d}")
for a, b in itertools.combinations(sorted(clips), 2):
    if a.split("__")[0] == b.split("__")[0]:
        continue
    n = min(len(clips[a]), len(clips[b]))
    x, y = (c[:n] / np.sqrt((c[:n] ** 2).mean()) for c in (clips[a], clips[b]))
    for rel in (-6, 0, 6):
        m = 0.1 * x * 10 ** (rel / 40) + 0.1 * y * 10 ** (-rel / 40)
        for g in (-20, -10, 0, 10):
            write(f"{dst}/pairs{g:+d}/{a}+{b}@{rel:+d}.wav", m * 10 ** (g / 20))
PY
}

# The mean LRAP of the two labels over the pair files scored in JSON (`tag --format json` of a
# level_copies pairs folder).
pair_lrap() { # JSON
  python3 - "$1" <<'PY'
import json, os, sys
import numpy as np
d = json.load(open(sys.argv[1]))
classes, out = d["classes"], []
for f in d["files"]:
    a, b = os.path.basename(f["path"]).split("@")[0].split("+")
    s = np.array(f["scores"])
    t = {classes.index(a.split("__")[0]), classes.index(b.split("__")[0])}
    out.append(np.mean([sum(s[k] >= s[c] for k in t) / (s >= s[c]).sum() for c in t]))
print(f"{np.mean(out):.3f}")
PY
}
