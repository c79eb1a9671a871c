#!/usr/bin/env python3
"""Does splitting a mixture into NMF components help the built-in model rank its instruments?
Evaluation only, on real solo recordings named CLASS__name.wav (../shared/real-dev):

    experiments/nmf_views.py ../shared/real-dev [MIXTURES] [BINARY]

Each recording's log-mel comes from `instrec features`; mixtures of 2–3 recordings of different
classes are summed in the mel power domain (cut to the shortest, each scaled to the same mean
mel power, then by a random −6–0 dB; seed 1), so their baseline differs from `instrec evaluate
--recordings`, which sums waveforms matched by RMS. Each mixture's power mel V is factorised as
W·H (K components, KL multiplicative updates, 200 iterations) and every component's view is
V·(W_k H_k)/(W H) (a soft mask). The built-in model (`instrec forward`, s2 over 43-frame
windows) scores the mixture and every view; the script prints the mixtures' LRAP for the mixture
alone, the class-wise maximum over the views (with and without the mixture), and the mean of the
views' mean and the mixture. Needs numpy only.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

CLASSES = "cel cla flu gac gel org pia sax tru vio voi".split()
WINDOW, HOP, FLOOR = 43, 22, 1e-6


def load(folder, binary, tmp):
    solos = {}
    for f in sorted(glob.glob(os.path.join(folder, "*__*.*"))):
        c = os.path.basename(f).split("__")[0]
        if c not in CLASSES:
            continue
        out = os.path.join(tmp, os.path.basename(f) + ".npy")
        subprocess.run([binary, "features", f, "--out", out], check=True, capture_output=True)
        solos.setdefault(c, []).append(np.exp(np.load(out).astype(np.float64)) - FLOOR)
    return solos


def mixtures(solos, n, rng):
    present = sorted(solos)
    out = []
    for _ in range(n):
        k = rng.integers(2, min(3, len(present)) + 1)
        cls = list(rng.permutation(present)[:k])
        parts = [solos[c][rng.integers(len(solos[c]))] for c in cls]
        t = min(p.shape[1] for p in parts)
        v = sum(10 ** (rng.uniform(-6, 0) / 10) / p[:, :t].mean() * p[:, :t] for p in parts)
        out.append((cls, v))
    return out


def windows(logmel):
    t = logmel.shape[1]
    starts = range(0, t - WINDOW + 1, HOP) if t >= WINDOW else [0]
    for s in starts:
        w = logmel[:, s : s + WINDOW]
        yield np.pad(w, ((0, 0), (0, WINDOW - w.shape[1])), constant_values=np.log(FLOOR)).T


def nmf_views(v, k, iters=200, seed=0):
    r = np.random.default_rng(seed)
    w, h = r.random((v.shape[0], k)) + 0.1, r.random((k, v.shape[1])) + 0.1
    for _ in range(iters):
        h *= (w.T @ (v / (w @ h + 1e-12))) / (w.sum(0)[:, None] + 1e-12)
        w *= ((v / (w @ h + 1e-12)) @ h.T) / (h.sum(1)[None, :] + 1e-12)
    wh = w @ h + 1e-12
    return [v * np.outer(w[:, i], h[i]) / wh for i in range(k)]


def score(view_sets, binary, tmp):
    """Per mixture, per view: the s2 clip score (window sigmoids summed, over their maximum)."""
    batch, index = [], []
    for m, views in enumerate(view_sets):
        for j, v in enumerate(views):
            for w in windows(np.log(v + FLOOR)):
                batch.append(w)
                index.append((m, j))
    x, y = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(x, np.repeat(np.stack(batch)[:, None], 3, axis=1).astype(np.float32))
    subprocess.run([binary, "forward", "--arch", "resnet18", "--num-classes", "11",
                    "--weights", os.path.join(os.path.dirname(__file__), "..", "models", "default"),
                    "--input", x, "--out", y], check=True, capture_output=True)
    p = 1 / (1 + np.exp(-np.load(y)))
    sums = {}
    for key, row in zip(index, p):
        sums[key] = sums.get(key, 0) + row
    return [[sums[(m, j)] / max(sums[(m, j)].max(), 1e-12) for j in range(len(vs))]
            for m, vs in enumerate(view_sets)]


def lrap(labels, scores):
    total = 0.0
    for y, s in zip(labels, scores):
        pos = [i for i in range(len(CLASSES)) if y[i]]
        total += sum(sum(s[j] >= s[i] for j in pos) / (s >= s[i]).sum() for i in pos) / len(pos)
    return total / len(labels)


def main(folder, n=400, binary="target/release/instrec"):
    with tempfile.TemporaryDirectory() as tmp:
        mixes = mixtures(load(folder, binary, tmp), n, np.random.default_rng(1))
        labels = [[c in cls for c in CLASSES] for cls, _ in mixes]
        base = [s[0] for s in score([[v] for _, v in mixes], binary, tmp)]
        print(f"{n} mixtures; the mixture alone: LRAP {lrap(labels, base):.3f}")
        for k in (2, 3, 4):
            views = score([nmf_views(v, k) for _, v in mixes], binary, tmp)
            top = [np.max(vs, 0) for vs in views]
            print(f"K={k}: max over the views {lrap(labels, top):.3f}; "
                  f"with the mixture {lrap(labels, [np.maximum(t, b) for t, b in zip(top, base)]):.3f}; "
                  f"mean of views' mean and mixture "
                  f"{lrap(labels, [(np.mean(vs, 0) + b) / 2 for vs, b in zip(views, base)]):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) if i == 0 else a for i, a in enumerate(sys.argv[2:])))
