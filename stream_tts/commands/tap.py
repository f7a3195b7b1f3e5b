"""`stream-tts tap` (watch every bus event as JSON lines: strict JSON, a NaN or infinite number in
an event's detail is written as null, bus/messages.py `TapEvent.to_json`) and `stream-tts tap-proxy` (the
XSUB/XPUB proxy itself, which supervisord runs as the program `tap`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO

from bus.config import parse_with_config
from bus.events import Kind
from bus.tap import events, run_proxy, subscribe


def cli_proxy(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts tap-proxy")
    _, config = parse_with_config(parser, argv)
    return run_proxy(config)


def cli_tap(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts tap", description="Print bus events as JSON lines.")
    parser.add_argument(
        "--type",
        action="append",
        dest="kinds",
        metavar="KIND",
        choices=[kind.value for kind in Kind],
        help="only events of this kind (repeatable; bus/events.py says who sends each)",
    )
    parser.add_argument("--stream", help="only events of this stream")
    parser.add_argument("--node", help="only events of this node")
    parser.add_argument("--output", type=Path, help="append to FILE instead of stdout")
    parser.add_argument("--heartbeats", action="store_true", help="include heartbeat events")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args, config = parse_with_config(parser, argv)
    out: IO[str] = args.output.open("a", encoding="utf-8") if args.output else sys.stdout
    sock = subscribe(config)
    print(f"I tap: watching {config.endpoints.connect['tap_out']}", file=sys.stderr, flush=True)
    try:
        for ev in events(sock, args.seconds):
            if args.kinds and ev.kind not in args.kinds:
                continue
            if not args.kinds and ev.kind == Kind.HEARTBEAT and not args.heartbeats:
                continue
            if args.stream and ev.stream != args.stream:
                continue
            if args.node and ev.node != args.node:
                continue
            # to_json: valid JSON only (NaN, inf -> null); allow_nan=False holds it to that
            out.write(json.dumps(ev.to_json(), ensure_ascii=False, allow_nan=False) + "\n")
            out.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        sock.close(linger=0)
        if out is not sys.stdout:
            out.close()
    return 0
