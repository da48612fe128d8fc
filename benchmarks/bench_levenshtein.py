"""Edit distance, old and new: the pure-Python table viewfinder used before, and rapidfuzz.

Run: python benchmarks/bench_levenshtein.py [--chars 3000] [--repeat 5]

Before issue 18 the Levenshtein distance behind `compare`'s CER and WER was written three
times as the same pure-Python dynamic-programming table (evaluate/compare.py, the OCR
benchmark and its test); now `viewfinder.evaluate.compare.levenshtein` is the one function,
computed by `rapidfuzz.distance.Levenshtein`. Both run here, interleaved in one process on
the same texts: a reference of `--chars` characters made of the OCR ground truth
(tests/assets/ocr/ground_truth.json) repeated, and a hypothesis with one character in 20
substituted, deleted or inserted (a fixed seed, so every run compares the same pair). It
prints the median time of each for characters (CER) and words (WER), checks both give the
same distance, and prints old / new.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from viewfinder.evaluate.compare import levenshtein

GROUND_TRUTH = Path(__file__).resolve().parent.parent / "tests" / "assets" / "ocr"


def table_levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """The edit distance as viewfinder computed it before issue 18 (pure Python, O(n*m))."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, start=1):
        current = [i]
        for j, item_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b))
            )
        previous = current
    return previous[-1]


def texts(chars: int) -> tuple[str, str]:
    """(hypothesis, reference): real OCR text of `chars` characters, and a 5%-edited copy."""
    lines = json.loads((GROUND_TRUTH / "ground_truth.json").read_text(encoding="utf-8"))
    corpus = "\n".join(line for page in lines.values() for line in page)
    reference = (corpus * (chars // len(corpus) + 1))[:chars]
    rng = random.Random(18)
    edited: list[str] = []
    for char in reference:
        roll = rng.random()
        if roll < 0.0167:
            edited.append(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789"))  # substituted
        elif roll < 0.0333:
            continue  # deleted
        elif roll < 0.05:
            edited.extend((char, rng.choice("abcdefghijklmnopqrstuvwxyz")))  # inserted
        else:
            edited.append(char)
    return "".join(edited), reference


def median_seconds(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Median wall seconds of `repeat` runs, and what the run returned."""
    times, result = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    """Time both implementations side by side and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=3000, help="reference length")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    args = parser.parse_args()
    hypothesis, reference = texts(args.chars)
    pairs = {
        "characters (CER)": (hypothesis, reference),
        "words (WER)": (hypothesis.split(), reference.split()),
    }
    print(f"reference {len(reference):,} characters, {len(reference.split()):,} words")
    print(f"{'':18}{'distance':>9}{'old s':>11}{'new s':>11}{'old / new':>11}")
    for label, (a, b) in pairs.items():
        old_seconds, old = median_seconds(lambda a=a, b=b: table_levenshtein(a, b), args.repeat)
        new_seconds, new = median_seconds(lambda a=a, b=b: levenshtein(a, b), args.repeat)
        if old != new:
            raise SystemExit(f"{label}: the old table says {old}, rapidfuzz {new}")
        print(
            f"{label:18}{new:>9,}{old_seconds:>11.4f}{new_seconds:>11.6f}"
            f"{old_seconds / new_seconds:>10,.0f}x"
        )


if __name__ == "__main__":
    main()
