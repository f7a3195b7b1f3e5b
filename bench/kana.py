"""Milliseconds per sentence of the kana frontend over tests/data/kana_cases.tsv.

Run: .venv/bin/python bench/kana.py [--json OUT]. Prints the median and p90, cold (first pass on a
fresh frontend: unknown English words go through e2k) and warm (e2k and number caches filled, as in a
running synthesize node), plus the CER against the hand-written readings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.synthesize.kana.reading import KanaFrontend
from tests.test_kana import cer, load_cases


def timed(frontend: KanaFrontend, texts: list[str]) -> tuple[list[float], list[str]]:
    times, outs = [], []
    for text in texts:
        start = time.perf_counter()
        outs.append(frontend.to_kana(text))
        times.append((time.perf_counter() - start) * 1000)
    return times, outs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    cases = load_cases()
    texts = [text for text, _, _ in cases]
    start = time.perf_counter()
    frontend = KanaFrontend()
    load_s = time.perf_counter() - start
    cold, outs = timed(frontend, texts)
    warm, _ = timed(frontend, texts)
    result = {
        "sentences": len(texts),
        "load_s": round(load_s, 3),
        "cold_median_ms": round(statistics.median(cold), 3),
        "cold_p90_ms": round(statistics.quantiles(cold, n=10)[-1], 3),
        "warm_median_ms": round(statistics.median(warm), 3),
        "warm_p90_ms": round(statistics.quantiles(warm, n=10)[-1], 3),
        "cer": round(cer(list(zip(outs, [exp for _, exp, _ in cases], strict=True))), 5),
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
