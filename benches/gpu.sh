#!/usr/bin/env bash
# instrec on a CUDA GPU through LibTorch (--backend tch --device cuda:N), next to PyTorch on the
# same GPU. Not part of CI: it needs an NVIDIA GPU and a CUDA build of PyTorch (PyPI's Linux
# torch wheel is one).
#
#   pip install torch==2.9.0 torchvision numpy soundfile    # the torch tch 0.22 builds against
#   bash benches/gpu.sh [cuda:N]
#
# Builds `cargo build --release --features tch` with LIBTORCH_USE_PYTORCH=1 (the wheel's
# libtorch), unless INSTREC=/path/to/instrec names a binary built that way already (a GPU machine
# without a Rust toolchain: build elsewhere and copy it, with the same torch installed). Then, in
# one go (about 5 minutes of GPU time):
#   1. `instrec bench model --backend tch --device cuda:N` for ResNet18 and ResNet50 (batch 64):
#      training with LibTorch's fused Adam (what `train` uses), with burn's (--burn-adam, the
#      code before it), in LibTorch's default NCHW layout (INSTREC_MEMORY_FORMAT=nchw; training
#      convolves channels-last otherwise) and with --precision bf16, and inference;
#   2. benches/pytorch_bench.py model --device cuda for the same models: fp32 with PyTorch's
#      default Adam (foreach) and its fused one (NCHW, and channels-last as instrec's LibTorch
#      training runs), and bf16 autocast with channels-last memory
#      (what PyTorch users on an H100/H200 train with);
#   3. a short real training run: a small synthetic corpus (`instrec synth`) and 3 epochs of
#      `instrec train --backend tch --device cuda:N`, with its wall time and each epoch's
#      windows/s from the run's log.jsonl, then the same with --precision bf16;
#   4. benches/train_pytorch.py: the same recipe in PyTorch on the windows instrec cached, 3
#      epochs, fp32 (default and fused Adam) and bf16, each epoch's windows/s;
#   5. the same training run on this machine's CPU through LibTorch, for its time.
# STEPS (default 50) sets the timed steps of both benchmarks. TCH_TEST=/path/to/tests-tch-binary
# (built with the same features) also runs the LibTorch tests there, on the GPU too.
# With a torch other than 2.9.0, set LIBTORCH_BYPASS_VERSION_CHECK=1 (at your own risk).
set -euo pipefail
DEVICE="${1:-cuda:0}"
STEPS="${STEPS:-50}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
WORK="${WORK:-$(mktemp -d)}"

if [[ -z "${INSTREC:-}" ]]; then
  (cd "$ROOT" && LIBTORCH_USE_PYTORCH=1 cargo build --release --features tch)
  INSTREC="$ROOT/target/release/instrec"
fi
# The wheel's libtorch is found at run time through the torch package.
TORCH_LIB="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count())'
"$INSTREC" --version

echo "== instrec bench model, tch on $DEVICE: fused Adam, burn's Adam, NCHW, fused Adam with bf16"
for arch in resnet18 resnet50; do
  "$INSTREC" bench model --arch "$arch" --backend tch --device "$DEVICE" --steps "$STEPS"
  "$INSTREC" bench model --arch "$arch" --backend tch --device "$DEVICE" --steps "$STEPS" --burn-adam | grep train
  INSTREC_MEMORY_FORMAT=nchw "$INSTREC" bench model --arch "$arch" --backend tch --device "$DEVICE" \
    --steps "$STEPS" | grep train
  "$INSTREC" bench model --arch "$arch" --backend tch --device "$DEVICE" --steps "$STEPS" --precision bf16 | grep train
done

echo "== PyTorch on ${DEVICE}: fp32 (default Adam, fused Adam), bf16 autocast + channels-last"
for arch in resnet18 resnet50; do
  for opts in "--precision fp32" "--precision fp32 --adam fused" "--precision fp32 --adam fused --channels-last" \
    "--precision bf16" "--precision bf16 --adam fused"; do
    # shellcheck disable=SC2086
    CUDA_VISIBLE_DEVICES="${DEVICE#cuda:}" "$PYTHON" "$HERE/pytorch_bench.py" model --arch "$arch" \
      --device cuda --steps "$STEPS" $opts
  done
done

echo "== a short training run on $DEVICE (synthetic corpus, 3 epochs)"
"$INSTREC" synth --out "$WORK/corpus" --train-per-class 20 --test-clips 20 --seed 3
start=$(date +%s.%N)
"$INSTREC" train --data "$WORK/corpus" --out "$WORK/run" --arch resnet18 --init random \
  --max-epochs 3 --backend tch --device "$DEVICE" --cache-dir "$WORK/cache"
end=$(date +%s.%N)
echo "training wall time: $("$PYTHON" -c "print(round($end - $start, 1))") s"
"$PYTHON" -c 'import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print("epoch %d: %.0f windows/s, train loss %.4f" % (e["epoch"], e["samples_per_s"], e["train_loss"]))' "$WORK/run/log.jsonl"
echo "== the same run with --precision bf16"
"$INSTREC" train --data "$WORK/corpus" --out "$WORK/run-bf16" --arch resnet18 --init random \
  --max-epochs 3 --backend tch --device "$DEVICE" --cache-dir "$WORK/cache" --precision bf16
"$PYTHON" -c 'import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print("epoch %d: %.0f windows/s, train loss %.4f" % (e["epoch"], e["samples_per_s"], e["train_loss"]))' "$WORK/run-bf16/log.jsonl"

echo "== the same recipe in PyTorch on the same cached windows (benches/train_pytorch.py, 3 epochs)"
for opts in "--precision fp32" "--precision fp32 --adam fused" "--precision bf16 --adam fused"; do
  # shellcheck disable=SC2086
  CUDA_VISIBLE_DEVICES="${DEVICE#cuda:}" "$PYTHON" "$HERE/train_pytorch.py" "$(ls -t "$WORK"/cache/features-*.bin | head -1)" \
    --epochs 3 --device cuda $opts
done
"$INSTREC" evaluate --model "$WORK/run/model" --data "$WORK/corpus" --backend tch --device "$DEVICE" --cache-dir "$WORK/cache" | tail -5

if [[ -n "${TCH_TEST:-}" ]]; then
  # The tests/tch binary of the same build (target/release/deps/tch-*): its fused-Adam tests
  # also run on cuda:0 where LibTorch sees a GPU.
  echo "== tests/tch (fused Adam on the CPU and cuda:0, bf16 blocks)"
  "$TCH_TEST" --nocapture 2>&1 | grep -E "relative|fused (true|false)|bf16 against|test result|panicked"
fi

echo "== the same run on this machine's CPU through LibTorch (its weights come from the CPU's generator)"
"$INSTREC" train --data "$WORK/corpus" --out "$WORK/run-cpu" --arch resnet18 --init random \
  --max-epochs 3 --backend tch --device cpu --cache-dir "$WORK/cache"
