#!/usr/bin/env python3
"""instrec against PyTorch / torchaudio, side by side on this machine, with the ratios.

    pip install torch torchaudio torchvision numpy soundfile   # not part of CI
    cargo build --release
    python3 benches/compare.py [--threads 2] [--audio FILE.wav] [--tch target-tch/release/instrec]
                               [--update-readme README.md]

Runs, one after the other (never two at once), the model benchmarks interleaved:
  - `instrec bench model` (flex; and `--backend tch` with --tch) and benches/pytorch_bench.py
    model, for ResNet18 and ResNet50, batch 64, with RAYON_NUM_THREADS / torch threads = --threads;
    with --tch also PyTorch with channels-last memory (`--channels-last`), the layout instrec's
    LibTorch training runs in, as a second reference for its training rows;
  - `instrec bench features` and benches/pytorch_bench.py features on one thread, on --audio or a
    20-s 44.1 kHz stereo 16-bit WAV written here (the IRMAS test-clip format).
Prints a Markdown table (ratio = instrec / PyTorch of the best runs, above 1 is faster; and each
round's own ratio, instrec's run over the PyTorch run beside it) and, with --update-readme,
puts it between the `<!-- speed:begin -->` and `<!-- speed:end -->` lines of that file.
Each figure is the best of --repeat runs (the machine's other load only ever slows a run down).
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, env=e, check=True, capture_output=True, text=True).stdout


def instrec_model(binary, arch, threads, steps, backend="flex"):
    out = run(
        [binary, "bench", "model", "--arch", arch, "--backend", backend, "--steps", str(steps)],
        env={"RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)},
    )
    train = float(re.search(r"train:\s+([\d.]+)", out).group(1))
    infer = float(re.search(r"infer:\s+([\d.]+)", out).group(1))
    return train, infer


def torch_model(arch, threads, steps, channels_last=False):
    out = run(
        [sys.executable, os.path.join(HERE, "pytorch_bench.py"), "model", "--arch", arch,
         "--threads", str(threads), "--steps", str(steps)]
        + (["--channels-last"] if channels_last else [])
    )
    r = json.loads(out.strip().splitlines()[-1])
    return r["train_samples_per_s"], r["infer_samples_per_s"], r["torch"]


def instrec_features(binary, audio, clips):
    out = run([binary, "bench", "features", "--audio", audio, "--clips", str(clips),
               "--threads", "1"])
    return float(re.search(r"threads\s+1:\s+([\d.]+)", out).group(1))


def torch_features(audio, clips):
    out = run([sys.executable, os.path.join(HERE, "pytorch_bench.py"), "features", audio,
               "--clips", str(clips)])
    r = json.loads(out.strip().splitlines()[-1])
    return r["audio_s_per_s"], r["torchaudio"]


def write_test_wav(path, seconds=20.0, rate=44100):
    """A chord with vibrato over soft noise, stereo 16-bit: any audio times the same."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(7)
    chord = sum(np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * 5 * t)) for f in (220, 277, 330))
    left = 0.2 * chord + 0.02 * rng.standard_normal(t.size)
    right = 0.2 * np.roll(chord, 300) + 0.02 * rng.standard_normal(t.size)
    pcm = (np.clip(np.stack([left, right], 1), -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/instrec"))
    ap.add_argument("--tch", help="an instrec built with --features tch, to time --backend tch too")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--audio")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--archs", default="resnet18,resnet50")
    ap.add_argument("--update-readme")
    a = ap.parse_args()

    def best(rs):
        """(best training, best inference, anything else of the first run) over the repeats."""
        return (max(r[0] for r in rs), max(r[1] for r in rs)) + tuple(rs[0][2:])

    rows = []
    torch_version = "?"
    for arch in a.archs.split(","):
        # Interleaved (instrec, PyTorch, instrec tch, instrec, ...): this VM's speed drifts, and
        # a drift then reaches every side rather than one.
        runs = {"flex": [], "torch": [], "tch": [], "torch-cl": []}
        for _ in range(a.repeat):
            runs["flex"].append(instrec_model(a.binary, arch, a.threads, a.steps))
            runs["torch"].append(torch_model(arch, a.threads, a.steps))
            if a.tch:
                runs["tch"].append(instrec_model(a.tch, arch, a.threads, a.steps, "tch"))
                # tch trains channels-last: PyTorch in that layout too, as a second reference.
                runs["torch-cl"].append(torch_model(arch, a.threads, a.steps, True))
        torch_version = best(runs["torch"])[2]
        pairs = [("flex", "torch"), ("tch", "torch"), ("tch", "torch-cl")] if a.tch else [
            ("flex", "torch")]
        for backend, reference in pairs:
            ours, theirs = best(runs[backend]), best(runs[reference])
            for i, what in ((0, "training step"), (1, "inference")):
                if reference == "torch-cl" and i == 1:
                    continue
                # Each round's own ratio (instrec and PyTorch run back to back): a drift of the
                # machine between rounds moves both sides of it alike.
                paired = [o[i] / t[i] for o, t in zip(runs[backend], runs[reference])]
                label = f"{arch} {what}, batch 64 (samples/s)"
                if reference == "torch-cl":
                    label += ", PyTorch channels-last"
                rows.append((label, backend, ours[i], theirs[i], paired))

    with tempfile.TemporaryDirectory() as tmp:
        audio = a.audio
        if audio is None:
            audio = os.path.join(tmp, "chord-20s-44k-stereo.wav")
            write_test_wav(audio)
        ours = max(instrec_features(a.binary, audio, a.clips) for _ in range(a.repeat))
        runs = [torch_features(audio, a.clips) for _ in range(a.repeat)]
        theirs = max(r[0] for r in runs)
        ta_version = runs[0][1]
    rows.append(("front end: decode + mono + resample to 22,050 Hz + log-mel, 20-s 44.1 kHz "
                 "stereo WAV, 1 thread (audio-s/s)", "flex", ours, theirs, None))

    date = datetime.date.today().isoformat()
    lines = [
        f"Measured {date} by `benches/compare.py` on {machine()}; {a.threads} threads for the "
        f"models (RAYON_NUM_THREADS, torch.set_num_threads), 1 for the front end; PyTorch "
        f"{torch_version}, torchaudio {ta_version}; best of {a.repeat} runs.",
        "",
        "| what | instrec backend | instrec | PyTorch | ratio | ratio per round |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for what, backend, ours, theirs, paired in rows:
        rounds = ", ".join(f"{r:.2f}×" for r in paired) if paired else "–"
        lines.append(f"| {what} | {backend} | {ours:,.1f} | {theirs:,.1f} | {ours / theirs:.2f}× "
                     f"| {rounds} |")
    table = "\n".join(lines)
    print(table)
    if a.update_readme:
        text = open(a.update_readme).read()
        begin, end = "<!-- speed:begin -->", "<!-- speed:end -->"
        if begin not in text or end not in text:
            sys.exit(f"{a.update_readme}: no {begin} … {end} lines to replace")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        tmp = a.update_readme + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{head}{begin}\n{table}\n{end}{tail}")
        os.replace(tmp, a.update_readme)


if __name__ == "__main__":
    main()
