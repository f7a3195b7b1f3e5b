"""`stream-tts say TEXT`: speak a line through the running pipeline."""

from __future__ import annotations

import argparse
import sys

from bus.client import IngestUnavailable, Publisher
from bus.config import parse_with_config


def cli_say(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts say", description="Speak TEXT through the pipeline.")
    parser.add_argument("text", nargs="+", help="the English text; '-' reads stdin")
    parser.add_argument("--stream", default="cli", help="stream (agent session) name (default: cli)")
    args, config = parse_with_config(parser, argv)
    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    if not text.strip():
        print("E say: nothing to say (empty text)", file=sys.stderr)
        return 2
    try:
        with Publisher(config) as pub:
            pub.send(args.stream, text, final=True, source="say")
    except IngestUnavailable as exc:
        print(f"E say: {exc}", file=sys.stderr)
        return 1
    return 0
