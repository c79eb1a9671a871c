#!/usr/bin/env bash
# Puts the repository sample libraries of models/libraries.toml in models/libs/, at the commits the
# built-in model was trained from (MODEL.md). The Debian ones come from apt:
#   apt install fluid-soundfont-gm musescore-general-soundfont-lossless timgm6mb-soundfont freepats
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p libs
get() { # owner/name commit directory [sparse patterns...]
  local dir=libs/$3
  if [ ! -d "$dir/.git" ]; then
    git clone --filter=blob:none --no-checkout "https://github.com/$1" "$dir"
  fi
  # Samples are bytes: a repository's `* text eol=crlf` would rewrite their line feeds.
  echo '* -text' > "$dir/.git/info/attributes"
  if [ $# -gt 3 ]; then
    git -C "$dir" sparse-checkout set --no-cone "${@:4}"
  fi
  git -C "$dir" checkout --quiet "$2"
}
get sfzinstruments/karoryfer.weresax 595d1fc1044edf6260d44b8215b723a3fbdd1802 karoryfer.weresax
get sfzinstruments/SplendidGrandPiano 1c595d827b7fd7f0be3134aaed0f90b3662a09cf SplendidGrandPiano
get kmturley/karoryfer.black-and-green-guitars f370da48d37869ed4d1b268fdb221547ac28919f \
  karoryfer.black-and-green-guitars
# tonejs-instruments' samples as JamesRyanATX/Harmonicon copies them (the original repository's
# history is 1.7 GB): only the WAVs of the instruments models/sfz/tonejs-*.sfz play.
samples=/packages/library-core/samples
get JamesRyanATX/Harmonicon 42f46a740d50e22b187702bec78f86876ff5c431 tonejs \
  "$samples/cello/*.wav" "$samples/cello/cello.txt" "$samples/clarinet/*.wav" "$samples/flute/*.wav" \
  "$samples/acoustic-guitar/*.wav" "$samples/electric-guitar/*.wav" "$samples/organ/*.wav" \
  "$samples/piano/*.wav" "$samples/trumpet/*.wav" "$samples/violin/*.wav"
# models/libraries-more.toml: saxophones, a flute, guitars and a second grand piano.
get sfzinstruments/MTG.SoloSax b494d256549b3d088fdec176ce82867f8a1f58b2 MTG.SoloSax
get sfzinstruments/Ixox.Flute 0cc54468bb0d2d9b32921958585caad65ba8df21 Ixox.Flute
get sfzinstruments/karoryfer.emilyguitar b4920dc662fd9cad6dcaccdeecffdd91c8725d8c karoryfer.emilyguitar
get sfzinstruments/karoryfer.shinyguitar 57243cca85277dbcc120ce17c6178032f93c80f3 karoryfer.shinyguitar
get sfzinstruments/BengtNilsson.HeadroomPiano 2a7df3f7252227a3484202c1d61bc1bfe352a971 \
  BengtNilsson.HeadroomPiano
