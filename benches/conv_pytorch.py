#!/usr/bin/env python3
"""What `cargo run --release --example conv_bench` measures, done with PyTorch: the 3×3 stride-1
convolutions of ResNet18 and the 1×1 ones of ResNet50 (batch 64, planes of 43×128 windows),
`(conv(x) * r).sum()` forward and its backward (dx and dW), the best of --runs each.

    pip install torch                       # not part of CI
    python3 benches/conv_pytorch.py [--threads 2] [--runs 8]

Prints a Markdown table in conv_bench's row order, so that the two compare layer by layer.
"""
import argparse
import time

import torch

# (kernel, channels in, channels out, height, width): conv_bench's shapes.
SHAPES = [
    (3, 64, 64, 11, 32),
    (3, 128, 128, 6, 16),
    (3, 256, 256, 3, 8),
    (3, 512, 512, 2, 4),
    (1, 256, 64, 11, 32),
    (1, 64, 256, 11, 32),
    (1, 512, 128, 6, 16),
    (1, 128, 512, 6, 16),
    (1, 1024, 256, 3, 8),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"PyTorch {torch.__version__}, {a.threads} threads, best of {a.runs}")
    print("| kernel, channels × plane | PyTorch forward | backward |")
    print("|---|---|---|")
    for k, c, c_out, h, w in SHAPES:
        conv = torch.nn.Conv2d(c, c_out, k, padding=k // 2, bias=False)
        x0, r = torch.randn(64, c, h, w), torch.randn(64, c_out, h, w)
        best_f = best_b = float("inf")
        for _ in range(a.runs):
            x = x0.clone().requires_grad_()
            t = time.perf_counter()
            loss = (conv(x) * r).sum()
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            best_f, best_b = min(best_f, t1 - t), min(best_b, t2 - t1)
        print(f"| {k}×{k}, {c} → {c_out} × {h}×{w} | {best_f * 1e3:.1f} ms | {best_b * 1e3:.1f} ms |",
              flush=True)


if __name__ == "__main__":
    main()
