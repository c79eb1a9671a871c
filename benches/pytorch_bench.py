#!/usr/bin/env python3
"""What `instrec bench model` and `instrec bench features` measure, done with PyTorch.

    pip install torch torchaudio torchvision numpy soundfile
    python3 benches/pytorch_bench.py model --arch resnet18 --threads 2 [--device cuda]
        [--precision bf16] [--adam fused|foreach|for-loop]
    python3 benches/pytorch_bench.py features FILE.wav --clips 20

model: torchvision ResNet18/50 with 11 outputs on random [64, 3, 43, 128] windows; a training
step is forward + BCEWithLogits + backward + Adam(5e-4, weight decay 5e-4); inference is the
eval-mode forward under torch.inference_mode. One untimed warm-up step each, as instrec does.
--precision bf16 is what PyTorch users on an H100/H200 train with: torch.autocast(bfloat16) and
channels-last memory (fp32 weights, loss and optimizer); --channels-last gives fp32 that layout
too (what instrec's LibTorch training runs in). --adam picks Adam's implementation
(default: PyTorch's own choice, foreach on CUDA and a for-loop on the CPU).
features: soundfile decode, channel mean, torchaudio.functional.resample to 22,050 Hz,
MelSpectrogram(n_fft=2048, hop_length=512, n_mels=128), ln(x + 1e-6), one thread.
Prints one JSON line. Not part of CI (benches/compare.sh runs it next to instrec).
"""
import argparse
import json
import time

import numpy as np
import torch


def bench_model(a):
    import torchvision

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    net = getattr(torchvision.models, a.arch)(num_classes=11).to(dev)
    x = (torch.randn(a.batch, 3, 43, 128) * 3 - 8).to(dev)
    y = (torch.rand(a.batch, 11) < 0.2).float().to(dev)
    bf16 = a.precision == "bf16"
    if bf16 or a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    impl = {"fused": {"fused": True}, "foreach": {"foreach": True},
            "for-loop": {"foreach": False}}.get(a.adam, {})
    opt = torch.optim.Adam(net.parameters(), lr=5e-4, weight_decay=5e-4, **impl)

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train(n):
        """(total seconds, seconds in the optimizer step, the device synchronised around it)"""
        net.train()
        t = time.perf_counter()
        in_opt = 0.0
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = net(x)
            loss = loss_fn(out.float(), y)
            loss.backward()
            sync()
            t_opt = time.perf_counter()
            opt.step()
            loss.item()
            sync()
            in_opt += time.perf_counter() - t_opt
        return time.perf_counter() - t, in_opt

    def infer(n):
        net.eval()
        t = time.perf_counter()
        with torch.inference_mode(), autocast():
            for _ in range(n):
                net(x).cpu()
        sync()
        return time.perf_counter() - t

    train(1)
    tr, tr_opt = train(a.steps)
    infer(1)
    inf = infer(a.steps)
    return {
        "what": "model",
        "arch": a.arch,
        "device": a.device,
        "threads": a.threads,
        "batch": a.batch,
        "precision": a.precision,
        "adam": a.adam,
        "channels_last": bf16 or a.channels_last,
        "train_samples_per_s": a.batch * a.steps / tr,
        "optimizer_share": tr_opt / tr,
        "infer_samples_per_s": a.batch * a.steps / inf,
        "torch": torch.__version__,
    }


def bench_features(a):
    import soundfile
    import torchaudio

    torch.set_num_threads(1)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128
    )

    def one():
        data, sr = soundfile.read(a.audio, dtype="float32", always_2d=True)
        x = torch.from_numpy(np.ascontiguousarray(data.T)).mean(0)
        if sr != 22050:
            x = torchaudio.functional.resample(x, sr, 22050)
        m = torch.log(mel(x) + 1e-6)
        return data.shape[0] / sr, m

    one()
    t = time.perf_counter()
    audio = sum(one()[0] for _ in range(a.clips))
    wall = time.perf_counter() - t
    return {
        "what": "features",
        "threads": 1,
        "audio_seconds": audio,
        "wall_seconds": wall,
        "audio_s_per_s": audio / wall,
        "torchaudio": torchaudio.__version__,
    }


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("model")
    m.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--batch", type=int, default=64)
    m.add_argument("--steps", type=int, default=5)
    m.add_argument("--device", default="cpu")
    m.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    m.add_argument("--adam", default="default", choices=["default", "fused", "foreach", "for-loop"])
    m.add_argument("--channels-last", action="store_true",
                   help="channels-last memory in fp32 too (instrec's LibTorch training layout)")
    f = sub.add_parser("features")
    f.add_argument("audio")
    f.add_argument("--clips", type=int, default=20)
    a = ap.parse_args()
    r = bench_model(a) if a.cmd == "model" else bench_features(a)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
