#!/usr/bin/env python3
"""The PyTorch pipeline that `instrec bench tag` is compared with, on the same folder.

    pip install torch torchaudio torchvision numpy safetensors
    instrec bench tag                                   # renders $TMPDIR/instrec-bench-tag-100
    python3 benches/tag_pytorch.py $TMPDIR/instrec-bench-tag-100 [--bundle RUN/model] [--threads 2]

Per file, as instrec does it: WAV read as int16 / 32768, channels averaged,
torchaudio.functional.resample to 22,050 Hz, MelSpectrogram(n_fft=2048, hop_length=512,
n_mels=128), ln(x + 1e-6), 43-frame windows every 22 frames (plus one ending at the last frame,
short clips padded with ln(1e-6)), the window three times as channels, torchvision ResNet18 with
11 outputs in eval mode, sigmoid, mean over windows. Prints audio-s/s and peak memory.
Not part of CI.
"""
import argparse
import os
import resource
import time
import wave

import numpy as np
import torch
import torchaudio
import torchvision


def read_wav(path):
    with wave.open(path) as w:
        assert w.getsampwidth() == 2, path
        ch, sr = w.getnchannels(), w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, ch)
    return torch.from_numpy(x.T.astype(np.float32) / 32768.0), sr


def starts(frames, length=43, hop=22):
    s = list(range(0, max(frames - length, 0) + 1, hop))
    if frames > length and s[-1] + length < frames:
        s.append(frames - length)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--bundle")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = torchvision.models.resnet18(num_classes=11)
    if a.bundle:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(os.path.join(a.bundle, "model.safetensors")))
    model.eval()
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128)
    files = sorted(
        os.path.join(d, f)
        for d, _, fs in os.walk(a.dir)
        for f in fs
        if f.endswith(".wav") and "IRMAS-TrainingData" not in d
    )
    t0 = time.time()
    audio_s = 0.0
    with torch.no_grad():
        for f in files:
            x, sr = read_wav(f)
            audio_s += x.shape[1] / sr
            m = x.mean(0)
            if sr != 22050:
                m = torchaudio.functional.resample(m, sr, 22050)
            lm = torch.log(mel(m) + 1e-6)  # [128, frames]
            frames = lm.shape[1]
            if frames < 43:
                lm = torch.nn.functional.pad(lm, (0, 43 - frames), value=float(np.log(1e-6)))
            w = torch.stack([lm[:, s:s + 43].T for s in starts(lm.shape[1])])  # [n, 43, 128]
            scores = torch.sigmoid(model(w[:, None].expand(-1, 3, -1, -1))).mean(0)
    wall = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"PyTorch {torch.__version__} ({a.threads} threads): {len(files)} files, {audio_s:.1f} s of audio "
          f"in {wall:.2f} s = {audio_s / wall:.1f} audio-s/s; peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
