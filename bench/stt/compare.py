"""Prints `make bench-stt`'s table from the JSON lines of both engines' runs.

    python compare.py OURS.jsonl THEIRS.jsonl [OURS2.jsonl THEIRS2.jsonl ...]

Runs alternate (ours, theirs, ours, theirs…); for each engine the figures of its fastest run
(least CPU per audio second) are shown, and the word error rate is over all utterances.
"""
import json
import re
import sys

NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
           "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten"}


def words(text):
    text = re.sub(r"[^a-z0-9' ]", " ", text.lower())
    return [NUMBERS.get(w, w) for w in text.split()]


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[len(b)]


def load(path):
    utterances, total = [], None
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if "engine" in record:
                total = record
            else:
                utterances.append(record)
    errors = sum(edit_distance(words(u["reference"]), words(u["hypothesis"])) for u in utterances)
    reference_words = sum(len(words(u["reference"])) for u in utterances)
    total["wer"] = errors / max(reference_words, 1)
    total["utterances"] = len(utterances)
    total["cpu_per_audio_s"] = total["cpu_s"] / total["audio_s"]
    total["rtf"] = total["wall_s"] / total["audio_s"]
    return total


def main():
    runs = [load(p) for p in sys.argv[1:]]
    best = {}
    for run in runs:
        name = run["engine"]
        if name not in best or run["cpu_per_audio_s"] < best[name]["cpu_per_audio_s"]:
            best[name] = run
    ours, theirs = (best[n] for n in sorted(best, key=lambda n: "original" in n))
    print(f"{len(runs)} runs, {ours['utterances']} utterances, {ours['audio_s']:.1f} s of audio, one thread each")
    print(f"{'':34} {'ours':>12} {'original':>12} {'ours/orig':>10}")
    for key, label, fmt in [("cpu_per_audio_s", "CPU s per audio s", "{:.3f}"),
                            ("rtf", "wall RTF", "{:.3f}"),
                            ("wer", "word error rate", "{:.3f}"),
                            ("peak_rss_mib", "peak RSS (MiB)", "{:.0f}"),
                            ("load_s", "load time (s)", "{:.2f}")]:
        a, b = ours[key], theirs[key]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{label:34} {fmt.format(a):>12} {fmt.format(b):>12} {ratio:>10}")
    print("targets: CPU ratio <= 0.67 (1/1.5), WER no worse, RTF <= 0.15, RSS <= 250 MiB")


if __name__ == "__main__":
    main()
