"""`stream-tts models ...`: tiny (write the tiny random-weight models), and later list / fetch."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def cli_models(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tiny = sub.add_parser("tiny", help="write tiny random-weight models (qwen2 GGUF + CosyVoice2 folder)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "tiny":
        from models.tiny import build_tiny_models

        t0 = time.monotonic()
        gguf, cosy = build_tiny_models(args.dir, seed=args.seed)
        print(f"{gguf}\n{cosy}")
        print(f"I models: tiny models ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        return 0
    return 2
