#!/usr/bin/env bash
# Puts the SFZ sample libraries of models/libraries.toml in models/libs/, at the commits the
# built-in model was trained from (MODEL.md). The Debian ones come from apt:
#   apt install fluid-soundfont-gm musescore-general-soundfont-lossless timgm6mb-soundfont freepats
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p libs
get() { # owner/name commit
  local dir=libs/${1#*/}
  if [ ! -d "$dir/.git" ]; then
    git clone --filter=blob:none "https://github.com/$1" "$dir"
  fi
  git -C "$dir" checkout --quiet "$2"
}
get sfzinstruments/karoryfer.weresax 595d1fc1044edf6260d44b8215b723a3fbdd1802
get sfzinstruments/SplendidGrandPiano 1c595d827b7fd7f0be3134aaed0f90b3662a09cf
get kmturley/karoryfer.black-and-green-guitars f370da48d37869ed4d1b268fdb221547ac28919f
