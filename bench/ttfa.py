"""Time to first audio, stage by stage: `stream-tts bench` (python -m bench.ttfa).

Runs a fixed set of English sentences through a pipeline, one at a time (each waits for the
previous to play, so no sentence queues behind another), and reads every sentence's timeline
from what the pipeline itself records:
  * played.jsonl (playback's ack log): the stamps chain publisher -> ingest -> translate (the first
    clause's) -> synthesize (recv = the first clause's arrival) -> playback, and
    first_sample_wall_ns (the first sample at the device; with the WAV sink, when it was written);
  * the tap: synthesize's `finished` event, whose first_chunk_ms runs from the first clause's
    arrival to the first audio chunk.
Per sentence (wall clock, ms):
  ingest      publisher sent -> ingest sent
  translate   ingest sent -> translate sent (the first clause)
  synthesize  first clause received -> first audio chunk made
  playback    first chunk made -> first sample at the device
  ttfa        publisher sent -> first sample (the parts plus the bus hops between them)
and p50/p95 of each; and, from playback's tap events, how far ahead of its turn the tightest
later chunk of each sentence arrived and how many underruns there were (a start won by cutting
that lead to nothing would be a gap). `--up` starts `stream-tts up --tiny` first (and `down`
after); otherwise it runs against the pipeline `--config` names. `--stages` composes TTFA from
per-stage results taken alone (bench/ttfa_stages.py) instead, for a machine where the whole
pipeline cannot run.

    stream-tts bench [--config F] [--data-dir D] [--up] [--sentences 8] [--json OUT]
    stream-tts bench --stages [--translate F] [--synth F --synth-variant NAME] [--playback F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import ttfa_stages

SENTENCES = [
    "The tests passed.",
    "I updated the README with the new install steps.",
    "Now I will run the linter on the changed files.",
    "Three files had formatting problems, and I fixed them.",
    "The build is green again.",
    "Next, I am adding a test for the parser.",
    "It checks empty input, long input and invalid bytes.",
    "Everything is committed on the feature branch.",
]
PARTS = ("ingest", "translate", "synthesize", "playback")
RESULTS = Path(__file__).resolve().parent / "results"


def percentiles(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {
        "p50_ms": round(statistics.median(s), 3),
        "p95_ms": round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))], 3),
        "n": len(s),
    }


def timeline(record: dict[str, Any], synth_first_chunk_ms: float) -> dict[str, float]:
    """One played.jsonl record (+ synthesize's first_chunk_ms) -> the per-stage ms of that sentence."""
    st = {s[0]: s for s in record["stamps"]}  # [stage, recv_wall, recv_mono, sent_wall, sent_mono]
    for need in ("publisher", "ingest", "translate", "synthesize"):
        if need not in st:
            raise ValueError(f"played record of seq {record.get('seq')} has no {need} stamp")
    pub = st["publisher"][3]
    first_chunk_wall = st["synthesize"][1] + synth_first_chunk_ms * 1e6
    first_sample = int(record["first_sample_wall_ns"])
    return {
        "ingest": (st["ingest"][3] - pub) / 1e6,
        "translate": (st["translate"][3] - st["ingest"][3]) / 1e6,
        "synthesize": synth_first_chunk_ms,
        "playback": (first_sample - first_chunk_wall) / 1e6,
        "ttfa": (first_sample - pub) / 1e6,
    }


class TapWatch:
    """synthesize's and playback's `finished` events and playback's underruns of one stream,
    collected in the background."""

    def __init__(self, config: Any, stream: str) -> None:
        from bus.tap import events, subscribe

        self.first_chunk_ms: dict[int, float] = {}
        self.chunk_leads_ms: dict[int, list[float]] = {}  # playback: each chunk's arrival -> its first sample
        self.underruns: dict[int, int] = {}
        self._stop = threading.Event()
        self._sock = subscribe(config)
        self._events = events
        self._stream = stream
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for ev in self._events(self._sock, 0.2):
                if ev.stream != self._stream:
                    continue
                if ev.node == "synthesize" and ev.kind == "finished":
                    ms = ev.detail.get("first_chunk_ms")
                    if isinstance(ms, int | float):
                        self.first_chunk_ms[ev.seq] = float(ms)
                elif ev.node == "playback" and ev.kind == "finished":
                    self.chunk_leads_ms[ev.seq] = [float(x) for x in ev.detail.get("chunk_latency_ms", [])]
                elif ev.node == "playback" and ev.kind == "underrun":
                    self.underruns[ev.seq] = self.underruns.get(ev.seq, 0) + 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close(linger=0)


def played_records(path: Path, stream: str) -> list[dict[str, Any]]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("stream") == stream:
            out.append(rec)
    return out


def run_bench(config: Any, sentences: list[str], timeout_s: float = 120.0) -> dict[str, Any]:
    """Each sentence sent, played and timed in turn; returns per-sentence timelines and p50/p95."""
    from bus.client import Publisher

    stream = f"bench-{os.getpid()}-{int(time.time())}"
    played = config.data_dir / "played.jsonl"
    tap = TapWatch(config, stream)
    time.sleep(0.3)  # the tap subscription settles before the first event we need
    rows: list[dict[str, Any]] = []
    try:
        with Publisher(config) as pub:
            for i, text in enumerate(sentences):
                pub.send(stream, text, final=True, source="bench")
                deadline = time.monotonic() + timeout_s
                recs: list[dict[str, Any]] = []
                while time.monotonic() < deadline:
                    recs = played_records(played, stream)
                    if (
                        len(recs) > i
                        and recs[i]["seq"] in tap.first_chunk_ms
                        and recs[i]["seq"] in tap.chunk_leads_ms
                    ):
                        break
                    time.sleep(0.05)
                else:
                    raise TimeoutError(f"sentence {i} ({text!r}) not played within {timeout_s:.0f} s")
                rec = recs[i]
                row = timeline(rec, tap.first_chunk_ms[rec["seq"]])
                leads = tap.chunk_leads_ms[rec["seq"]][1:]
                rows.append(
                    {
                        "seq": rec["seq"],
                        "text_en": text,
                        "text_ja": rec.get("text_ja", ""),
                        **row,
                        "later_chunk_lead_ms": min(leads) if leads else None,
                        "underruns": tap.underruns.get(rec["seq"], 0),
                    }
                )
    finally:
        tap.close()
    stages = {k: percentiles([r[k] for r in rows]) for k in (*PARTS, "ttfa")}
    return {"stream": stream, "sentences": rows, "stages": stages, "gapless": gapless(rows)}


def gapless(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How far ahead of its turn the tightest later chunk of each sentence arrived (its arrival at
    playback -> its first sample at the device; the device's own latency is part of it), and
    the underruns: what a faster start costs, side by side with TTFA."""
    leads = [r["later_chunk_lead_ms"] for r in rows if r["later_chunk_lead_ms"] is not None]
    out: dict[str, Any] = {"underruns": sum(r["underruns"] for r in rows), "sentences": len(rows)}
    if leads:
        out.update(
            later_chunk_lead_ms_p50=round(statistics.median(leads), 1),
            later_chunk_lead_ms_min=round(min(leads), 1),
        )
    return out


def table(stages: dict[str, dict[str, float]]) -> str:
    lines = ["| stage | p50 ms | p95 ms | n |", "|---|---|---|---|"]
    for k in (*PARTS, "ttfa"):
        s = stages[k]
        name = "**TTFA** (end to end)" if k == "ttfa" else k
        lines.append(f"| {name} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['n']:.0f} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import platform

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def stages_mode(args: argparse.Namespace) -> int:
    stages = {
        "ingest": ttfa_stages.from_ingest(args.ingest),
        "translate": ttfa_stages.from_translate(args.translate),
        "playback": ttfa_stages.from_playback(args.playback),
    }
    synth = json.loads(args.synth.read_text(encoding="utf-8"))
    v = synth["variants"][args.synth_variant]
    stages["synthesize"] = ttfa_stages.stage(
        v["first_chunk_ms_p50"],
        v["first_chunk_ms_p95"],
        f"{args.synth.name}: variants[{args.synth_variant!r}] ({synth.get('device', '?')})",
        v["floor"]["first_chunk_ms"],
    )
    ttfa = ttfa_stages.compose(stages)
    print(ttfa_stages.table(stages, ttfa))
    if args.json:
        args.json.write_text(json.dumps({"stages": stages, "ttfa": ttfa}, indent=1) + "\n", encoding="utf-8")
    return 0


def cli_bench(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="stream-tts bench", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="TOML config of the pipeline (default: $STREAM_TTS_CONFIG)")
    ap.add_argument("--data-dir", help="with --up: where the pipeline keeps logs and played.jsonl")
    ap.add_argument("--up", action="store_true", help="`stream-tts up --tiny` first, `down` after")
    ap.add_argument("--sentences", type=int, default=len(SENTENCES), help="how many of the fixed sentences")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one sentence may take")
    ap.add_argument("--json", type=Path, help="write the result here")
    ap.add_argument("--stages", action="store_true", help="compose TTFA from per-stage result files")
    ap.add_argument("--ingest", type=Path, default=RESULTS / "ingest.json")
    ap.add_argument("--translate", type=Path, default=RESULTS / "translate-gpu.json")
    ap.add_argument("--synth", type=Path, default=RESULTS / "ttfa-gpu.json")
    ap.add_argument("--synth-variant", default="lm+flow-graph hop15")
    ap.add_argument("--playback", type=Path, default=RESULTS / "playback.json")
    args = ap.parse_args(argv)
    if args.stages:
        return stages_mode(args)
    from bus.config import ConfigError, load_config

    common = [
        *(["--config", args.config] if args.config else []),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]
    if args.data_dir:
        os.environ["STREAM_TTS_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if args.up:
        from stream_tts.supervise import cli_up

        if cli_up([*common, "--tiny", "--quiet"]) != 0:
            return 1
    try:
        config = load_config(args.config)
        res = run_bench(config, SENTENCES[: args.sentences], args.timeout)
    except (ConfigError, TimeoutError, ConnectionError, ValueError) as exc:
        print(f"E bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.up:
            from stream_tts.supervise import cli_down

            cli_down(common)
    res["machine"] = machine()
    res["command"] = "stream-tts bench " + " ".join(argv)
    print(table(res["stages"]))
    g = res["gapless"]
    if "later_chunk_lead_ms_min" in g:
        print(
            f"later chunks: the tightest arrived {g['later_chunk_lead_ms_min']:.0f} ms before its first "
            f"sample (p50 over sentences {g['later_chunk_lead_ms_p50']:.0f} ms); underruns: {g['underruns']}"
        )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(cli_bench(sys.argv[1:]))
