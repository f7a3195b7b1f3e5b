"""What the short-clause guard ([synthesize] min_mora) costs the first chunk, side by side.

A real synthesize node process on the tiny CosyVoice2 (CPU, the kana frontend on), fed sentences
the way translate sends them: a short first clause (「はい、」, 2 mora), then the rest 100 ms
later (translate decoding it). Variants: min_mora 8 (the default: the short clause waits for the
next) and 0 (the guard off: it goes to the engine alone). Figures: `first_chunk_ms` from the tap
(synthesize took the sentence -> its first chunk sent) and the wall time from the first clause
sent to the first chunk received here. Rounds alternate the variants so load falls on both.

    python bench/short_clause.py [--sentences 10] [--rounds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.send_delay import RUN_NODE, first, synth_node
from bus.messages import AudioChunk, Clause, decode, encode

VARIANTS = {"min_mora 8 (guard on, default)": 8, "min_mora 0 (guard off)": 0}
SHORT, REST = "はい、", "テストを実行しました。"
NEXT_CLAUSE_S = 0.1


def run_variant(min_mora: int, model: Path, work: Path, sentences: int) -> dict[str, list[float]]:
    section: dict[str, object] = {"model_dir": str(model), "threads": 1, "min_mora": min_mora}
    out: dict[str, list[float]] = {"first_chunk_ms": [], "wall_ms": []}
    with synth_node(RUN_NODE, section, work) as (tap, audio, push):
        for seq in range(sentences):
            t0 = time.monotonic()
            push.send_multipart(
                encode(Clause(stream="b", seq=seq, index=0, text=SHORT, last=False, text_en="en"))
            )
            time.sleep(NEXT_CLAUSE_S)
            push.send_multipart(
                encode(Clause(stream="b", seq=seq, index=1, text=REST, last=True, text_en="en"))
            )
            got_first = None
            while True:
                assert audio.poll(60_000), "no audio"
                chunk = decode(audio.recv_multipart())
                if isinstance(chunk, AudioChunk):
                    got_first = got_first or time.monotonic()
                    if chunk.last:
                        break
            done = first(tap, lambda e: e.kind == "finished" and e.seq == seq, 10)  # noqa: B023
            assert done and got_first, f"no finished event for seq {seq}"
            out["first_chunk_ms"].append(float(done.detail["first_chunk_ms"]))
            out["wall_ms"].append((got_first - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2

    results: dict[str, dict[str, list[float]]] = {n: {"first_chunk_ms": [], "wall_ms": []} for n in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_random_cosyvoice2(Path(tmp) / "cv")
        for r in range(args.rounds):
            for i, (name, mora) in enumerate(VARIANTS.items()):
                work = Path(tmp) / f"{r}-{i}"
                work.mkdir()
                for k, v in run_variant(mora, model, work, args.sentences).items():
                    results[name][k] += v
                print(f"round {r + 1}: {name} done", file=sys.stderr)
    print("| variant | sentences | first_chunk_ms p50 (tap) | first clause sent -> first chunk, p50 ms |")
    print("|---|---|---|---|")
    for name, d in results.items():
        fc, wall = d["first_chunk_ms"], d["wall_ms"]
        print(f"| {name} | {len(fc)} | {statistics.median(fc):.1f} | {statistics.median(wall):.1f} |")
    if args.json:
        summary = {
            k: {**v, "p50": {m: statistics.median(x) for m, x in v.items()}} for k, v in results.items()
        }
        args.json.write_text(json.dumps({"variants": summary}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
