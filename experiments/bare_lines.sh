#!/usr/bin/env bash
# Fine-tunes of a trained model (version 2 by default) that ask whether bare lines — songs played
# without accompaniment (`synth --solo`) — teach it to hear the instruments of a mixture of solo
# recordings, which it ranks badly (MODEL.md). Every arm starts from the same weights and trains
# 6 epochs at lr 1e-4 with `--mix`, so the arms differ only in their corpus or mixing:
#   control  the start model's own corpus again (what six more epochs do by themselves);
#   mix8     that corpus, 80 % of windows mixed, gains -3..0 dB;
#   solo     the same songs, half of them bare (`--solo 0.5`; the other half byte-identical);
#   solo8    the same songs, 80 % of them bare;
#   new8     new songs (the next seed: none heard or validated on before), 80 % of them bare;
#   new8-drums  those, mixing only partners of the same drum tag (`--mix-partners drums`: bare
#            lines, tagged `[nod]`, mostly with bare lines) — version 3's recipe
#            (models/retrain.sh);
#   redraw   new8-drums again on other new songs with another training seed (seed + 2 for
#            both): how far a second draw of version 3's recipe lands from the first;
#   drums-g12  new8-drums with partners' gains drawn from -12..0 dB instead of -6..0;
#   more     new8-drums's model, 6 more epochs on redraw's songs (12 epochs of bare lines);
#   bare100  new8-drums's songs, every one bare (`--solo 1`);
#   soup     the average of new8-drums's, redraw's and drums-g12's weights
#            (experiments/soup.py; needs numpy): scored for ranking, with new8-drums's thresholds.
#            The same-song arms' validation splits are
#            not the start model's (bare songs are renamed `[nod]`, which reorders the split's
#            song groups), so their kept epoch and thresholds saw songs it had trained on.
# Each model is scored, s2, on three sets:
#   - RECORDINGS_DIR (real solo recordings and 400 mixtures of them: `evaluate --recordings`);
#   - bare lines of libraries no model here trained on (Csound's GM bank and the tonejs
#     instruments, `--solo 1`, 12 clips per class, seed 2002), used the same way: solos and
#     mixtures of them;
#   - the test set of those libraries with accompaniment, as `evaluate --data` scores it.
# Last, new8-drums is scored on those bare lines cut to 1 s (real-dev's clip length).
#
#   experiments/bare_lines.sh RECORDINGS_DIR [OUT_DIR]
#
# START (default runs/v2/run) is the run to fine-tune and START_DATA (default runs/v2/data) its
# corpus; models/retrain.sh writes both (as runs/default/run and runs/default/data). Needs
# models/libraries-heldout.toml's and models/libraries-tonejs.toml's libraries (Debian
# csound-soundfont; models/sfz/make-tonejs.sh). ARMS="name ..." runs only those arms.
set -euo pipefail
rec=${1:?usage: bare_lines.sh RECORDINGS_DIR [OUT_DIR]}
out=${2:-runs/bare-lines}
start=${START:-runs/v2/run}
start_data=${START_DATA:-runs/v2/data}
bin=${INSTREC:-target/release/instrec}
models=$(dirname "$0")/../models
arms=${ARMS:-"control mix8 solo solo8 new8 new8-drums redraw drums-g12 more bare100 soup"}
mkdir -p "$out"
export INSTREC_CACHE="$out/cache"
libs=(--libraries "$models/libraries.toml" --libraries "$models/libraries-voices.toml")
seed=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$start/train.json")
per_class=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train_per_class'])" \
  "$start_data/instrec-synth.json")

# The unheard libraries' bare lines, as a folder of CLASS__NAME recordings.
heard="$out/unheard-bare"
if [ ! -d "$heard/recordings" ]; then
  "$bin" synth --libraries "$models/libraries-heldout.toml" --libraries "$models/libraries-tonejs.toml" \
    --perform --augment --solo 1 --train-per-class 12 --test-clips 1 --seed 2002 --out "$heard/data"
  mkdir -p "$heard/recordings"
  for d in "$heard"/data/IRMAS-TrainingData/*/; do
    c=$(basename "$d")
    for f in "$d"*.wav; do cp "$f" "$heard/recordings/${c}__$(basename "$f" | tr -d '[] ')"; done
  done
fi
accompanied="$out/unheard-accompanied"
[ -f "$accompanied/instrec-synth.json" ] ||
  "$bin" synth --libraries "$models/libraries-heldout.toml" --libraries "$models/libraries-tonejs.toml" \
    --perform --augment --train-per-class 30 --test-clips 60 --seed 2001 --out "$accompanied"

corpus() { # name, solo share, seed
  [ -f "$out/$1-data/instrec-synth.json" ] ||
    "$bin" synth "${libs[@]}" --perform --augment --solo "$2" --train-per-class "$per_class" \
      --test-clips 60 --seed "$3" --out "$out/$1-data"
}
arm() { # name, data, seed, train flags...
  local name=$1 data=$2 s=$3; shift 3
  case " $arms " in *" $name "*) ;; *) return 0 ;; esac
  [ -f "$out/$name/summary.json" ] ||
    "$bin" train --data "$data" --arch resnet18 --init "${INIT:-$start}" --seed "$s" --lr 1e-4 \
      --max-epochs 6 --warmup-epochs 1 --patience 6 --mix --out "$out/$name" "$@"
}
case " $arms " in *" solo "*) corpus solo 0.5 "$seed" ;; esac
case " $arms " in *" solo8 "*) corpus solo8 0.8 "$seed" ;; esac
case " $arms " in *" new8 "* | *" new8-drums "* | *" drums-g12 "*) corpus new8 0.8 "$((seed + 1))" ;; esac
case " $arms " in *" redraw "* | *" more "*) corpus new8s2 0.8 "$((seed + 2))" ;; esac
case " $arms " in *" bare100 "*) corpus bare100 1 "$((seed + 1))" ;; esac
arm control "$start_data" "$seed"
arm mix8 "$start_data" "$seed" --mix-prob 0.8 --mix-gain-db=-3,0
arm solo "$out/solo-data" "$seed"
arm solo8 "$out/solo8-data" "$seed"
arm new8 "$out/new8-data" "$((seed + 1))"
arm new8-drums "$out/new8-data" "$((seed + 1))" --mix-partners drums
arm redraw "$out/new8s2-data" "$((seed + 2))" --mix-partners drums
arm drums-g12 "$out/new8-data" "$((seed + 1))" --mix-partners drums --mix-gain-db=-12,0
case " $arms " in *" more "*) [ -f "$out/new8-drums/summary.json" ] || { echo "more needs new8-drums" >&2; exit 1; } ;; esac
INIT="$out/new8-drums" arm more "$out/new8s2-data" "$((seed + 2))" --mix-partners drums
arm bare100 "$out/bare100-data" "$((seed + 1))" --mix-partners drums
case " $arms " in *" soup "*)
  for a in new8-drums redraw drums-g12; do
    [ -f "$out/$a/summary.json" ] || { echo "soup needs $a" >&2; exit 1; }
  done
  [ -f "$out/soup/model.safetensors" ] ||
    python3 "$(dirname "$0")/soup.py" "$out/soup" "$out/new8-drums" "$out/redraw" "$out/drums-g12" ;;
esac

printf '| model | real solos top-1 | real mixtures LRAP | F1 | unheard bare solos top-1 | unheard bare mixtures LRAP | F1 | unheard accompanied test F1 (oracle) |\n|---|---|---|---|---|---|---|---|\n'
for name in start $arms; do
  model=$start
  [ "$name" = start ] || model=$out/$name
  for set in "real:$rec" "bare:$heard/recordings"; do
    [ -f "$out/eval/$name-${set%%:*}/report.json" ] ||
      "$bin" evaluate --model "$model" --recordings "${set#*:}" --aggregation s2 --mixtures 400 \
        --out "$out/eval/$name-${set%%:*}" > /dev/null
  done
  [ -f "$out/eval/$name-accompanied/report.json" ] ||
    "$bin" evaluate --model "$model" --data "$accompanied" --aggregation s2 \
      --out "$out/eval/$name-accompanied" > /dev/null
  python3 - "$out/eval" "$name" <<'PY'
import json, sys
d, n = sys.argv[1:]
rec = [json.load(open(f"{d}/{n}-{k}/report.json")) for k in ("real", "bare")]
acc = {r["kind"]: r["metrics"]["micro"]["f1"]
       for r in json.load(open(f"{d}/{n}-accompanied/report.json"))["results"]}
cells = [n]
for r in rec:
    cells += [f"{r['solo_top1']:.3f}", f"{r['mixture_lrap']:.3f}", f"{r['mixture_micro']['f1']:.3f}"]
cells.append(f"{acc['mixture-calibrated (global)']:.3f} ({acc['test-oracle']:.3f})")
print("| " + " | ".join(cells) + " |")
PY
done

# The same bare lines cut to their middle second, as long as most real-dev clips: how much of
# the gap between rendered and real mixtures is clip length (scored with new8-drums).
if [ -f "$out/new8-drums/summary.json" ]; then
  cut="$heard/recordings-1s"
  if [ ! -d "$cut" ]; then
    mkdir -p "$cut"
    python3 - "$heard/recordings" "$cut" <<'PY'
import glob, os, sys, wave
src, dst = sys.argv[1:]
for f in sorted(glob.glob(f"{src}/*.wav")):
    with wave.open(f) as w:
        rate, n = w.getframerate(), w.getnframes()
        w.setpos(max(0, n // 2 - rate // 2))
        frames, params = w.readframes(rate), w.getparams()
    with wave.open(os.path.join(dst, os.path.basename(f)), "wb") as o:
        o.setparams(params)
        o.writeframes(frames)
PY
  fi
  [ -f "$out/eval/new8-drums-bare-1s/report.json" ] ||
    "$bin" evaluate --model "$out/new8-drums" --recordings "$cut" --aggregation s2 --mixtures 400 \
      --out "$out/eval/new8-drums-bare-1s" > /dev/null
  python3 - "$out/eval/new8-drums-bare-1s/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"new8-drums on the unheard bare lines cut to 1 s: solo top-1 {r['solo_top1']:.3f}, "
      f"mixture LRAP {r['mixture_lrap']:.3f}, F1 {r['mixture_micro']['f1']:.3f}")
PY
fi
