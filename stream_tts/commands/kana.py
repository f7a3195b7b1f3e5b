"""`stream-tts kana TEXT`: the kana the synthesizer receives for Japanese text (the reading
frontend of nodes/synthesize/kana/), to check how a word will be read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nodes.synthesize.kana.english import WORDS_PATH
from nodes.synthesize.kana.reading import KanaFrontend


def cli_kana(argv: list[str]) -> int:
    """`stream-tts kana TEXT` (or `-`: stdin, line by line): print what the synthesizer receives."""
    parser = argparse.ArgumentParser(prog="stream-tts kana", description=cli_kana.__doc__)
    parser.add_argument("text", nargs="+", help="Japanese text, or - to read lines from stdin")
    parser.add_argument("--words", type=Path, default=None, help=f"word list (default {WORDS_PATH})")
    args = parser.parse_args(argv)
    try:
        frontend = KanaFrontend(args.words)
    except (OSError, ValueError) as exc:
        print(f"stream-tts kana: {exc}", file=sys.stderr)
        return 2
    lines = sys.stdin.read().splitlines() if args.text == ["-"] else [" ".join(args.text)]
    for line in lines:
        print(frontend.to_kana(line))
    return 0
