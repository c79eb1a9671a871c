#!/usr/bin/env python3
"""What `cargo run --release --example conv_bench` measures, done with PyTorch: every distinct
convolution of ResNet18 and ResNet50 (batch 64, planes of 43×128 windows; the stem's input
without a gradient),
`(conv(x) * r).sum()` forward and its backward (dx and dW), the best of --runs each.

    pip install torch                       # not part of CI
    python3 benches/conv_pytorch.py [--threads 2] [--runs 8]

Prints a Markdown table in conv_bench's row order, so that the two compare layer by layer.
"""
import argparse
import time

import torch

# (kernel, stride, channels in, channels out, input height, width): conv_bench's shapes.
SHAPES = [
    (7, 2, 3, 64, 43, 128),
    (3, 1, 64, 64, 11, 32),
    (3, 1, 128, 128, 6, 16),
    (3, 1, 256, 256, 3, 8),
    (3, 1, 512, 512, 2, 4),
    (3, 2, 64, 128, 11, 32),
    (3, 2, 128, 256, 6, 16),
    (3, 2, 256, 512, 3, 8),
    (3, 2, 128, 128, 11, 32),
    (3, 2, 256, 256, 6, 16),
    (3, 2, 512, 512, 3, 8),
    (1, 2, 64, 128, 11, 32),
    (1, 2, 128, 256, 6, 16),
    (1, 2, 256, 512, 3, 8),
    (1, 1, 64, 64, 11, 32),
    (1, 1, 256, 64, 11, 32),
    (1, 1, 64, 256, 11, 32),
    (1, 1, 256, 128, 11, 32),
    (1, 2, 256, 512, 11, 32),
    (1, 1, 512, 128, 6, 16),
    (1, 1, 128, 512, 6, 16),
    (1, 1, 512, 256, 6, 16),
    (1, 2, 512, 1024, 6, 16),
    (1, 1, 1024, 256, 3, 8),
    (1, 1, 256, 1024, 3, 8),
    (1, 1, 1024, 512, 3, 8),
    (1, 2, 1024, 2048, 3, 8),
    (1, 1, 2048, 512, 2, 4),
    (1, 1, 512, 2048, 2, 4),
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
    for k, s, c, c_out, h, w in SHAPES:
        conv = torch.nn.Conv2d(c, c_out, k, stride=s, padding=k // 2, bias=False)
        oh, ow = ((n + 2 * (k // 2) - k) // s + 1 for n in (h, w))
        x0, r = torch.randn(64, c, h, w), torch.randn(64, c_out, oh, ow)
        best_f = best_b = float("inf")
        for _ in range(a.runs):
            x = x0.clone().requires_grad_(c != 3)
            t = time.perf_counter()
            loss = (conv(x) * r).sum()
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            best_f, best_b = min(best_f, t1 - t), min(best_b, t2 - t1)
        print(f"| {k}×{k}/{s}, {c} → {c_out} × {h}×{w} | {best_f * 1e3:.1f} ms | {best_b * 1e3:.1f} ms |",
              flush=True)


if __name__ == "__main__":
    main()
