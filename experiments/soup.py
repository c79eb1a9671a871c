#!/usr/bin/env python3
"""Averages the weights of model bundles fine-tuned from the same start (a "model soup",
Wortsman et al. 2022) into a new bundle: experiments/bare_lines.sh, and the built-in model's
version 4 (models/retrain.sh: version 3 and its level-proof fine-tune).

    soup.py OUT_BUNDLE BUNDLE_OR_RUN...

The soup keeps the first bundle's config.json (thresholds, provenance) with the new weights'
SHA-256, and the other bundles' provenance under provenance.averaged_with. Its thresholds were
not tuned for it, so only threshold-free measures (top-1, LRAP, oracle F1) are fair until
`instrec pack --calibrate-on CORPUS` tunes them. Needs numpy; reads and writes safetensors
directly."""
import hashlib, json, os, struct, sys
import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def bundle(path):
    return os.path.join(path, "model") if os.path.isdir(os.path.join(path, "model")) else path


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        tensors[k] = (v["dtype"], v["shape"], np.frombuffer(data[a:b], DTYPES[v["dtype"]]))
    return meta, tensors


def write(path, meta, tensors):
    header, blobs, offset = {}, [], 0
    for k in sorted(tensors):
        dtype, shape, arr = tensors[k]
        raw = arr.astype(DTYPES[dtype]).tobytes()
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: soup.py OUT_BUNDLE BUNDLE_OR_RUN BUNDLE_OR_RUN...")
    out, ins = sys.argv[1], [bundle(p) for p in sys.argv[2:]]
    loaded = [read(os.path.join(p, "model.safetensors")) for p in ins]
    meta, first = loaded[0]
    for p, (_, t) in zip(ins[1:], loaded[1:]):
        if {k: v[1] for k, v in t.items()} != {k: v[1] for k, v in first.items()}:
            sys.exit(f"{p}: not the same architecture as {ins[0]} (tensor names or shapes differ)")
    soup = {}
    for k, (dtype, shape, arr) in first.items():
        if dtype.startswith("F"):  # weights and BatchNorm statistics; counters stay the first's
            arr = sum(t[k][2].astype(np.float64) for _, t in loaded) / len(loaded)
        soup[k] = (dtype, shape, arr)
    os.makedirs(out, exist_ok=True)
    weights = os.path.join(out, "model.safetensors")
    write(weights, meta, soup)
    config = json.load(open(os.path.join(ins[0], "config.json")))
    # The other bundles' records, so every library the averaged weights learnt from is on record.
    config["provenance"]["averaged_with"] = [
        json.load(open(os.path.join(p, "config.json")))["provenance"] for p in ins[1:]
    ]
    config["weights_sha256"] = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)


main()
