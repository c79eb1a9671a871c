#!/usr/bin/env python3
"""Checks that an instrec model bundle is a plain torchvision model, and the way back.

    pip install torch torchvision safetensors numpy
    python3 benches/check_torchvision.py RUN/model [--instrec target/release/instrec]

1. Loads RUN/model/model.safetensors into torchvision.models.resnet18/50(num_classes=11) with
   strict=True and compares its eval-mode logits on random log-mel-like windows with
   `instrec forward` on the same bundle.
2. Saves the torchvision state dict with torch.save and runs `instrec forward --weights x.pth`:
   instrec → PyTorch → .pth → instrec gives the same logits.
3. `instrec export --out x.pth` loads with torch.load(weights_only=True), strictly, to the
   bundle's own logits.
Not part of CI (it needs PyTorch).
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file


def forward(instrec, arch, weights, x_path, out):
    subprocess.run([instrec, "forward", "--arch", arch, "--num-classes", "11", "--weights", weights,
                    "--input", x_path, "--out", out], check=True, capture_output=True)
    return np.load(out)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--instrec", default="target/release/instrec")
    a = ap.parse_args()
    arch = json.load(open(os.path.join(a.bundle, "config.json")))["arch"]
    model = getattr(torchvision.models, arch)(num_classes=11)
    state = load_file(os.path.join(a.bundle, "model.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    x = (np.random.default_rng(0).standard_normal((4, 3, 43, 128)) * 3 - 8).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        xp = os.path.join(d, "x.npy")
        np.save(xp, x)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        ours = forward(a.instrec, arch, a.bundle, xp, os.path.join(d, "y.npy"))
        print(f"torchvision on the bundle vs instrec forward: max|Δ|/max|y| = {rel(ours, ref):.2e}")
        pth = os.path.join(d, "weights.pth")
        torch.save(model.state_dict(), pth)
        back = forward(a.instrec, arch, pth, xp, os.path.join(d, "z.npy"))
        print(f"instrec → PyTorch → .pth → instrec:       max|Δ|/max|y| = {rel(back, ref):.2e}")
        exported = os.path.join(d, "exported.pth")
        subprocess.run([a.instrec, "export", "--model", a.bundle, "--out", exported], check=True,
                       capture_output=True)
        again = getattr(torchvision.models, arch)(num_classes=11)
        again.load_state_dict(torch.load(exported, weights_only=True), strict=True)
        again.eval()
        with torch.no_grad():
            exp = again(torch.from_numpy(x)).numpy()
        print(f"instrec export .pth → torch.load → torchvision: max|Δ|/max|y| = {rel(exp, ref):.2e}")
        assert rel(ours, ref) < 1e-4 and rel(back, ref) < 1e-4 and rel(exp, ref) == 0.0


if __name__ == "__main__":
    main()
