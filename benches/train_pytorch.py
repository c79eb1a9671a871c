#!/usr/bin/env python3
"""The paper's training recipe in PyTorch on the windows of an instrec feature cache, for the
windows/s of whole epochs beside `instrec train` (benches/gpu.sh runs both on one corpus).

    pip install torch torchvision numpy     # not part of CI
    instrec train --data CORPUS --out RUN --cache-dir CACHE ...   # writes CACHE/features-*.bin
    python3 benches/train_pytorch.py CACHE/features-KEY.bin --epochs 3 [--device cuda]
        [--precision bf16] [--adam fused|foreach|for-loop] [--threads 2]

Reads the log-mels instrec cached (so neither side pays for the front end), labels each clip by
its IRMAS class folder, holds out 15 % of the clips (seeded) for validation and trains a
torchvision ResNet18 from random weights: the non-overlapping 43-frame windows of each clip,
3 identical channels (instrec's `dup`), shuffled every epoch, batch 64, BCEWithLogits, Adam
(lr 5e-4, weight decay 5e-4), 5-epoch linear warm-up then cosine per batch over --max-epochs
(300, the paper's), and the validation loss after each epoch. Each epoch prints one JSON line;
`windows_per_s` is training windows over the seconds of the training loop, as `samples_per_s`
in instrec's log.jsonl. The split is not instrec's song split: windows/s, not accuracy, is what
this compares.
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch

CLASSES = ["cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi"]
WINDOW = 43


def read_cache(path):
    """[(log-mel [n_mels, frames] of the first channel, class index)] of the clips that decoded."""
    with open(path, "rb") as f:
        if f.read(8) != b"INSTRECF":
            raise SystemExit(f"{path}: not an instrec feature cache")
        (version,) = struct.unpack("<I", f.read(4))
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        n_mels = header["settings"]["n_mels"]
        channels = 2 if header["mode"] == "stereo" else 1
        clips = []
        for clip in header["clips"]:
            frames = clip.get("frames")
            if frames is None:
                continue
            data = np.frombuffer(f.read(4 * n_mels * frames * channels), dtype="<f4")
            mel = data[: n_mels * frames].reshape(n_mels, frames)
            folder = os.path.basename(os.path.dirname(clip["path"]))
            if folder in CLASSES:
                clips.append((mel, CLASSES.index(folder)))
    if version != 1:
        raise SystemExit(f"{path}: cache format {version}, this script reads 1")
    return clips


def windows(clips):
    """[N, 3, 43, n_mels] inputs and [N, 11] targets: every non-overlapping window."""
    xs, ys = [], []
    for mel, label in clips:
        frames = mel.shape[1]
        for s in range(0, max(frames - WINDOW, 0) + 1, WINDOW):
            xs.append(mel[:, s : s + WINDOW].T)
            y = np.zeros(len(CLASSES), dtype=np.float32)
            y[label] = 1
            ys.append(y)
    x = torch.from_numpy(np.stack(xs)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(np.stack(ys))


def main():
    import torchvision

    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--adam", default="default", choices=["default", "fused", "foreach", "for-loop"])
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    clips = read_cache(a.cache)
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(clips))
    n_val = max(1, round(0.15 * len(clips)))
    val = [clips[i] for i in order[:n_val]]
    train = [clips[i] for i in order[n_val:]]
    xt, yt = windows(train)
    xv, yv = windows(val)
    xt, yt, xv, yv = xt.to(dev), yt.to(dev), xv.to(dev), yv.to(dev)
    bf16 = a.precision == "bf16"
    net = torchvision.models.resnet18(num_classes=len(CLASSES)).to(dev)
    if bf16:
        net = net.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
        xv = xv.contiguous(memory_format=torch.channels_last)
    impl = {"fused": {"fused": True}, "foreach": {"foreach": True},
            "for-loop": {"foreach": False}}.get(a.adam, {})
    opt = torch.optim.Adam(net.parameters(), lr=5e-4, weight_decay=5e-4, **impl)
    batch = 64
    steps_per_epoch = math.ceil(len(xt) / batch)
    warmup, total = 5 * steps_per_epoch, a.max_epochs * steps_per_epoch

    def lr_factor(step):
        """Linear warm-up to the base rate, then cosine to 0 (per batch), as instrec."""
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for epoch in range(1, a.epochs + 1):
        net.train()
        perm = torch.randperm(len(xt), device=dev)
        sync()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        for b in range(steps_per_epoch):
            idx = perm[b * batch : (b + 1) * batch]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = net(xt[idx])
            loss = loss_fn(out.float(), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
        train_loss = loss_sum.item() / len(xt)
        sync()
        train_secs = time.perf_counter() - t0
        net.eval()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            val_loss = sum(
                loss_fn(net(xv[i : i + batch]).float(), yv[i : i + batch]).item() * len(xv[i : i + batch])
                for i in range(0, len(xv), batch)
            ) / len(xv)
        print(json.dumps({
            "epoch": epoch, "train_windows": len(xt), "train_loss": train_loss, "val_loss": val_loss,
            "seconds": time.perf_counter() - t0, "windows_per_s": len(xt) / train_secs,
            "device": a.device, "precision": a.precision, "adam": a.adam, "torch": torch.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
