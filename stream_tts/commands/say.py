"""`stream-tts say TEXT`: speak a line through the running pipeline.

Text that is not valid UTF-8 (bytes in argv, which Python hands over as lone surrogates, or on
stdin) is repaired, not refused: each bad byte becomes U+FFFD, with a warning on stderr, and the
rest is spoken."""

from __future__ import annotations

import argparse
import sys

from bus.client import IngestUnavailable, Publisher
from bus.config import parse_with_config
from bus.wire import repair_text


def cli_say(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts say", description="Speak TEXT through the pipeline.")
    parser.add_argument("text", nargs="+", help="the English text; '-' reads stdin")
    parser.add_argument("--stream", default="cli", help="stream (agent session) name (default: cli)")
    args, config = parse_with_config(parser, argv)
    text, repaired = _read_text(args.text)
    if repaired:
        print("W say: text that is not valid UTF-8 was repaired (U+FFFD)", file=sys.stderr)
    if not text.strip():
        print("E say: nothing to say (empty text)", file=sys.stderr)
        return 2
    try:
        with Publisher(config) as pub:
            pub.send(args.stream, text, final=True, source="say")  # encode repairs the stream name
    except IngestUnavailable as exc:
        print(f"E say: {exc}", file=sys.stderr)
        return 1
    return 0


def _read_text(words: list[str]) -> tuple[str, bool]:
    """The text to say (argv's words, or stdin for "-"), and whether it had to be repaired."""
    if words == ["-"]:
        raw = sys.stdin.buffer.read()  # bytes: stdin's text layer would raise on invalid UTF-8
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace"), True
    text = " ".join(words)
    fixed = repair_text(text)  # argv's bad bytes arrive as lone surrogates (surrogateescape)
    return fixed, fixed != text
