"""How long a chunk synthesize has made waits for its node loop to send it: the worker waking
the loop (bus/node.py `wake`, now) against the 5 ms poll it used before, side by side.

Each variant is a real synthesize node process on the tiny CosyVoice2 (CPU), fed whole sentences
one at a time through its PULL; the figure is each sentence's `send_delay_ms` (its finished tap
event: the longest any of its chunks waited between the worker and the socket). Rounds alternate
the variants so that the machine's load falls on both.

    python bench/send_delay.py [--sentences 10] [--rounds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.config import load_config
from bus.messages import AudioChunk, Clause, TapEvent, decode, encode
from bus.tap import events
from tests.conftest import write_config

REPO = Path(__file__).resolve().parent.parent
RUN_NODE = "import sys; from stream_tts.cli import main; sys.exit(main(['node', 'synthesize']))"
BEFORE = (  # the loop as it was: no wake-ups, a 5 ms poll
    "import nodes.synthesize.node as s; s.SynthesizeNode.poll_ms = 5; "
    "s.SynthesizeNode.wake = lambda self: None; " + RUN_NODE
)
VARIANTS = {"poll 5 ms, no wake-up (before)": BEFORE, "wake-up, poll 50 ms (now)": RUN_NODE}
TEXT = "テストを実行しました、ファイルを保存しました。"


@contextlib.contextmanager
def synth_node(
    code: str, section: dict[str, object], work: Path
) -> Iterator[tuple[zmq.Socket, zmq.Socket, zmq.Socket]]:
    """A real synthesize node process (`code` runs it) with `section` as its [synthesize], this
    process standing in for the tap (SUB), playback (PULL) and translate (PUSH); yields those three
    sockets once the node is ready."""
    cfg = write_config(work / "config.toml", work / "data", synthesize=section)
    ep = load_config(cfg, environ={}).endpoints
    ctx = zmq.Context()
    tap, audio, push = ctx.socket(zmq.SUB), ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    tap.setsockopt(zmq.SUBSCRIBE, b"")
    tap.bind(ep.bind["tap_in"])
    audio.bind(ep.bind["playback"])
    push.connect(ep.connect["synthesize"])
    env = {"STREAM_TTS_CONFIG": str(cfg), "PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}
    log = (work / "node.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        ready = first(tap, lambda e: e.kind == "heartbeat" and e.detail.get("state") == "ready", 120)
        assert ready, f"synthesize never ready: {(work / 'node.log').read_text()[-2000:]}"
        yield tap, audio, push
    finally:
        proc.terminate()
        proc.wait(30)
        ctx.destroy(linger=0)


def run_variant(code: str, model: Path, work: Path, sentences: int) -> list[float]:
    section: dict[str, object] = {
        "model_dir": str(model),
        "frontend": "none",
        "threads": 1,
        "first_hop_tokens": 5,
        "hop_tokens": 5,
    }
    delays: list[float] = []
    with synth_node(code, section, work) as (tap, audio, push):
        for seq in range(sentences):
            push.send_multipart(
                encode(Clause(stream="b", seq=seq, index=0, text=TEXT, last=True, text_en="en"))
            )
            while True:  # the whole sentence out
                assert audio.poll(60_000), "no audio"
                chunk = decode(audio.recv_multipart())
                if isinstance(chunk, AudioChunk) and chunk.last:
                    break
            done = first(tap, lambda e: e.kind == "finished" and e.seq == seq, 10)  # noqa: B023 (used at once)
            assert done, f"no finished event for seq {seq}"
            delays.append(float(done.detail["send_delay_ms"]))
    return delays


def first(tap: zmq.Socket, want: Callable[[TapEvent], bool], timeout_s: float) -> TapEvent | None:
    """The first tap event that `want` accepts within timeout_s."""
    return next((ev for ev in events(tap, timeout_s) if want(ev)), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2

    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_random_cosyvoice2(Path(tmp) / "cv")
        for r in range(args.rounds):
            for i, (name, code) in enumerate(VARIANTS.items()):
                work = Path(tmp) / f"{r}-{i}"
                work.mkdir()
                results[name] += run_variant(code, model, work, args.sentences)
                print(f"round {r + 1}: {name} done", file=sys.stderr)
    print("| variant | sentences | longest chunk wait per sentence, p50 ms | max ms |")
    print("|---|---|---|---|")
    for name, d in results.items():
        print(f"| {name} | {len(d)} | {statistics.median(d):.2f} | {max(d):.2f} |")
    if args.json:
        out = {
            "variants": {k: {"send_delay_ms": v, "p50_ms": statistics.median(v)} for k, v in results.items()}
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
