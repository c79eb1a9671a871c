#!/usr/bin/env python3
"""A second small set of real recordings, for evaluation only (never training; never committed).

real-dev has no trumpet, and its four voices are larynx-microphone signals. This writes 14 more
real recordings as CLASS__NAME.wav (the layout `instrec evaluate --recordings` reads) from two
public repositories' test and example audio, at pinned commits, read with `git show`:

    python3 experiments/real_ext.py MIRDATA_GIT LIBROSA_DATA_GIT OUT_DIR [REAL_DEV]

MIRDATA_GIT is a clone of mir-dataset-loaders/mirdata, LIBROSA_DATA_GIT one of librosa/data.
Each recording is cut where listed and peak-normalised to -0.9 dBFS, as real-dev's are; OUT_DIR
gets SOURCES.md with every file's source, licence and SHA-256. Needs numpy and soundfile.
With REAL_DEV (../shared/real-dev) it also writes two sets beside OUT_DIR (not inside it,
which `evaluate --recordings` would walk): OUT_DIR-real-dev-dyn, real-dev with its four
larynx-microphone voices replaced by the same singers' dynamic-microphone takes, and
OUT_DIR-union, that set and the seven recordings that are not Dagstuhl takes (25 in all).
Several licences are non-commercial: the files are for measuring, not for shipping or training.
"""

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

MIRDATA = "b95bf3893616ff16082beed7869f144bb711c163"
LIBROSA = "450cdd8a002c98e7bdbfebb309fc1ed024001f77"
M = "tests/resources/mir_datasets/"
DAG = M + "dagstuhl_choirset/audio_wav_22050_mono/DCS_LI_QuartetB_Take04_"
NC_SA = "CC BY-NC-SA 4.0"

# (file name, repository, path, start s, end s or None, dataset, licence)
RECORDINGS = [
    ("tru__sorohanro_trumpet", "librosa", "audio/sorohanro_-_solo-trumpet-06.hq.ogg", 0, 3.5,
     "Freesound 77711 (Mihai Sorohan), via librosa/data", "CC BY 3.0"),
    ("pia__lenaorsa_ragtime_a", "librosa",
     "audio/442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.hq.ogg", 10, 15,
     "Freesound 442789 (Lena Orsa), via librosa/data", "CC BY-NC 3.0"),
    ("pia__lenaorsa_ragtime_b", "librosa",
     "audio/442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.hq.ogg", 40, 45,
     "Freesound 442789 (Lena Orsa), via librosa/data", "CC BY-NC 3.0"),
    ("pia__jtd_trio", "mirdata",
     M + "jtd/raw/barronk-allgodschildren-drummondrrileyb-1990-8b77c067.wav", 0, None,
     "JTD (piano trio: piano with bass and drums)", "MIT"),
    ("vio__phenicx_violin4", "mirdata", M + "phenicx_anechoic/audio/beethoven/violin4.wav", 0,
     None, "PHENICX-Anechoic", NC_SA),
    ("voi__medleydb_male_singer", "mirdata",
     M + "medleydb_pitch/audio/AClassicEducation_NightOwl_STEM_08.wav", 0, None,
     "MedleyDB-Pitch (male singer, singer/songwriter)", NC_SA),
    ("voi__multivox_mamaines_S1", "mirdata",
     M + "multivox/C1/C1_07052025_S1_MAMAINES_P6_S6/S1_Song1_MAMAINES.wav", 0, None,
     "MULTIVOX (a singer's near-field recording)", "CC BY 4.0"),
] + [
    (f"voi__dagstuhl_{part}_{mic}", "mirdata", f"{DAG}{part}_{mic}.wav", 0, None,
     f"Dagstuhl ChoirSet ({'dynamic' if mic == 'DYN' else 'headset'} microphone)", "CC BY 4.0")
    for part, mic in [("A2", "DYN"), ("B2", "DYN"), ("S1", "DYN"), ("T2", "DYN"),
                      ("A2", "HSM"), ("B2", "HSM"), ("T2", "HSM")]
]

PEAK_DBFS = -0.9


def show(repo: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(repo), "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout


def git_dir(path: str) -> Path:
    p = Path(path)
    return p / ".git" if (p / ".git").exists() else p


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    repos = {"mirdata": (git_dir(sys.argv[1]), MIRDATA),
             "librosa": (git_dir(sys.argv[2]), LIBROSA)}
    out = Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, repo, path, start, end, dataset, licence in RECORDINGS:
        git, commit = repos[repo]
        raw = show(git, commit, path)
        x, sr = sf.read(io.BytesIO(raw), always_2d=True)
        x = x[int(start * sr): None if end is None else int(end * sr)]
        peak = np.abs(x).max()
        if peak <= 0:
            sys.exit(f"{path}: silent")
        x = x * (10 ** (PEAK_DBFS / 20) / peak)
        target = out / f"{name}.wav"
        sf.write(target, x, sr, subtype="PCM_16")
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        cut = f"{start}–{end} s" if end is not None else "whole"
        rows.append(f"| `{name}.wav` | {name[:3]} | {len(x) / sr:.1f} s ({cut}) | {dataset} | "
                    f"{licence} | `{repo}@{commit[:8]}:{path}` | `{digest[:16]}` |")
    (out / "SOURCES.md").write_text(
        "# real-ext: real recordings for evaluation only (experiments/real_ext.py)\n\n"
        "| file | class | length | source | licence | path | SHA-256 (first 16) |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(f"{len(rows)} recordings in {out}")
    if len(sys.argv) == 5:
        derived_sets(Path(sys.argv[4]), out)


def derived_sets(real_dev: Path, out: Path) -> None:
    """real-dev with dynamic-microphone voices, and its union with the new recordings."""
    dev = [p for p in sorted(real_dev.glob("*.wav")) if not p.name.startswith("voi__dagstuhl_")]
    dyn = sorted(out.glob("voi__dagstuhl_*_DYN.wav"))
    new = [p for p in sorted(out.glob("*.wav"))
           if not p.name.startswith("voi__dagstuhl_")]
    for name, files in [("real-dev-dyn", dev + dyn), ("union", dev + dyn + new)]:
        d = out.with_name(f"{out.name}-{name}")
        d.mkdir(exist_ok=True)
        for p in files:
            (d / p.name).write_bytes(p.read_bytes())
        print(f"{len(files)} recordings in {d}")


if __name__ == "__main__":
    main()
