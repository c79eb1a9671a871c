#!/usr/bin/env python3
"""Which recordings a model loses in two-part mixtures, and what it names instead: reads the
JSON that `instrec tag --format json` writes for the pair files of experiments/level.sh
(`CLASS__name+CLASS__name@GAIN.wav`) and prints, per recording, how often its class is among
the two top-scored classes of its pairs, then the classes in the top two that are in neither
part, with the recordings they came with most.

    instrec tag --model BUNDLE runs/level/levels/pairs+0 --format json > pairs.json
    experiments/pair_report.py pairs.json
"""
import collections
import json
import re
import sys

NAME = re.compile(r"(\w+?)__(.+?)\+(\w+?)__(.+?)@([+-]\d+)\.\w+$")


def main(path):
    report = json.load(open(path))
    classes = report["classes"]
    kept = collections.defaultdict(lambda: [0, 0])
    intruders = collections.Counter()
    with_whom = collections.defaultdict(collections.Counter)
    pairs = both = 0
    for f in report["files"]:
        m = NAME.search(f["path"])
        if not m:
            continue
        a, a_name, b, b_name, _gain = m.groups()
        scores = f["scores"]
        rank = sorted(range(len(classes)), key=lambda i: -scores[i])
        top2 = [classes[i] for i in rank[:2]]
        pairs += 1
        both += a in top2 and b in top2
        for cls, name in ((a, a_name), (b, b_name)):
            kept[f"{cls}__{name}"][0] += cls in top2
            kept[f"{cls}__{name}"][1] += 1
        for c in top2:
            if c not in (a, b):
                intruders[c] += 1
                with_whom[c].update([f"{a}__{a_name}", f"{b}__{b_name}"])
    print(f"{pairs} pairs, both parts in the top two: {both}\n")
    print("| recording | its class in the top two |\n|---|---|")
    for name, (k, n) in sorted(kept.items(), key=lambda kv: kv[1][0] / kv[1][1]):
        print(f"| {name} | {k} of {n} |")
    print("\n| named, in neither part | times | most often with |\n|---|---|---|")
    for c, n in intruders.most_common():
        top = ", ".join(f"{r} ({k})" for r, k in with_whom[c].most_common(3))
        print(f"| {c} | {n} | {top} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
