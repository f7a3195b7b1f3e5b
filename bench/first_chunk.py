"""First-chunk cost of CosyVoice2 and CosyVoice v1 side by side, in one process, on one device:
the same sentence through each engine as the synthesize node calls it, timed to its first chunk.

    .venv/bin/python bench/first_chunk.py                      # real-size random weights, CPU
    .venv/bin/python bench/first_chunk.py --size tiny          # the tiny folders (noise-speed)
    .venv/bin/python bench/first_chunk.py --device cuda        # on a GPU (v2 with its CUDA graphs)

Both folders are random weights in the released shapes (nodes/synthesize/cosyvoice/tiny.py,
nodes/synthesize/cosyvoice/v1/tiny.py): timing does not depend on weight values. Both are held to
at least 8 speech tokens a text token, so each reaches its first chunk by its streaming schedule
(v2: first_hop_tokens + 3 lookahead tokens; v1: v1_first_hop_tokens + 20), not by an early eos.
The runs alternate v2, v1, v2, v1, ... after one warm-up each. Prints a table, writes JSON
(--json, default var/bench/first-chunk-<size>-<device>.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.synthesize.cosyvoice.engine import EngineOptions
from nodes.synthesize.cosyvoice.factory import open_engine
from nodes.synthesize.engine import Synthesizer

# one sentence, two clauses, read in kana as the frontend hands them over
SENTENCE = ["テストヲジッコウシマシタ、", "スベテノテストガトオリマシタ。"]


def first_chunk(engine: Synthesizer, voice: str) -> dict[str, float]:
    t0 = time.perf_counter()
    gen = engine.synthesize(list(SENTENCE), voice)
    chunk = next(iter(gen))
    ms = (time.perf_counter() - t0) * 1e3
    gen.close()  # type: ignore[attr-defined]
    return {"first_chunk_ms": ms, "audio_ms": chunk.pcm.size / engine.sample_rate_hz * 1e3, **chunk.timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("tiny", "real"), default="real")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per engine (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--dir", type=Path, help="where the random folders go (default: a temp dir)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2
    from nodes.synthesize.cosyvoice.v1.tiny import write_random_cosyvoice1

    with tempfile.TemporaryDirectory(prefix="first-chunk-") as tmp:
        root = args.dir or Path(tmp)
        opts = EngineOptions(
            device=args.device, deadline_s=600.0, min_token_text_ratio=8.0, max_token_text_ratio=9.0
        )
        engines: dict[str, tuple[Synthesizer, str]] = {}
        build: dict[str, float] = {}
        load: dict[str, float] = {}
        for name, write, voice in (
            ("CosyVoice2-0.5B", write_random_cosyvoice2, "tiny-a"),
            ("CosyVoice-300M-SFT", write_random_cosyvoice1, "日语男"),
        ):
            folder = root / f"{name}-{args.size}"
            t0 = time.perf_counter()
            if not (folder / "llm.pt").is_file():
                write(folder, size=args.size)
            build[name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            engines[name] = (open_engine(folder, opts), voice)
            load[name] = time.perf_counter() - t0
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
        for engine, voice in engines.values():
            first_chunk(engine, voice)  # warm-up
        for _ in range(args.runs):
            for name, (engine, voice) in engines.items():
                runs[name].append(first_chunk(engine, voice))
    device = next(iter(engines.values()))[0].device_type
    result: dict[str, Any] = {
        "size": args.size,
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "sentence": SENTENCE,
        "engines": {},
    }
    print(f"first chunk, {args.size}-size random weights, {device}, {torch.get_num_threads()} threads")
    head = ("model", "first ms", "min ms", "LM steps", "LM ms", "flow ms", "HiFT ms", "audio ms")
    print("{:<20} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}".format(*head))
    for name, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        result["engines"][name] = {"median": med, "runs": rows, "build_s": build[name], "load_s": load[name]}
        print(
            f"{name:<20} {med['first_chunk_ms']:>9.0f} {min(r['first_chunk_ms'] for r in rows):>8.0f} "
            f"{med['lm_steps']:>8.0f} {med['lm_ms']:>8.0f} {med['flow_ms']:>8.0f} {med['hift_ms']:>8.0f} "
            f"{med['audio_ms']:>9.0f}"
        )
    out = args.json or Path("var/bench") / f"first-chunk-{args.size}-{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
