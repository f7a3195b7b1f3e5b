"""`stream-tts models tiny DIR | fetch | list`: tiny random-weight models, real weights, what is here.

Exit codes of `fetch`: 0 done, 1 failed (bad checksum, cut too often), 2 bad arguments,
3 hub unreachable (the message says what to download by hand), 4 not enough disk space,
5 not agreed to (a large download without --yes and no terminal to ask on).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from models.manifest import AUTO, DEFAULT_VOICE, MANIFEST_PATH, WEIGHTS_DIR, Manifest

EXIT_FAILED, EXIT_USAGE, EXIT_OFFLINE, EXIT_SPACE, EXIT_NOT_CONFIRMED = 1, 2, 3, 4, 5


def cli_models(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tiny = sub.add_parser(
        "tiny", help="write tiny random-weight models (qwen2 GGUF, CosyVoice2 and CosyVoice v1 folders)"
    )
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    fetch = sub.add_parser("fetch", help="download the real weights (asks before many GB unless --yes)")
    fetch.add_argument(
        "--translator",
        default=AUTO,
        help="auto (default: the best that fits this machine's memory beside the voice), Qwen2.5 7b, "
        "14b, 32b, 72b, Qwen3 qwen3-8b, qwen3-14b, 30b-a3b; none",
    )
    fetch.add_argument(
        "--voice", default=DEFAULT_VOICE, help=f"CosyVoice model (default {DEFAULT_VOICE}); none"
    )
    fetch.add_argument("--yes", "-y", action="store_true", help="do not ask before a large download")
    listing = sub.add_parser("list", help="which models are here, their size, and whether they verify")
    listing.add_argument("--json", action="store_true", help="one JSON object per model")
    for p in (fetch, listing):
        p.add_argument(
            "--dest", type=Path, default=WEIGHTS_DIR, help=f"weights folder (default {WEIGHTS_DIR})"
        )
        p.add_argument("--manifest", type=Path, default=MANIFEST_PATH, help="model manifest TOML")
    args = parser.parse_args(argv)
    if args.cmd == "tiny":
        from stream_tts.tiny import build_tiny_cosyvoice1, build_tiny_models

        t0 = time.monotonic()
        gguf, cosy = build_tiny_models(args.dir, seed=args.seed)
        cosy1 = build_tiny_cosyvoice1(args.dir, seed=args.seed)
        print(f"{gguf}\n{cosy}\n{cosy1}")
        print(f"I models: tiny models ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        return 0
    from models.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        print(f"E models: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.cmd == "fetch":
        return cli_fetch(manifest, args)
    return cli_list(manifest, args.dest.resolve(), args.json)


def cli_fetch(manifest: Manifest, args: argparse.Namespace) -> int:
    from models.fetch import FetchError, HubUnreachable, NotConfirmed, NotEnoughSpace, fetch
    from models.manifest import ManifestError

    translator = None if args.translator == "none" else args.translator
    voice = None if args.voice == "none" else args.voice
    if translator == AUTO:
        from models.choose import choose_translator, detect_memory

        choice = choose_translator(manifest, detect_memory())  # the voice runs, fetched now or not
        translator = choice.size
        print(
            f"I models: translator {choice.size}, picked for this machine: {choice.reason}. "
            "Another: --translator SIZE (and [translate] size = SIZE)",
            file=sys.stderr,
        )
    try:
        fetch(manifest, translator, voice, args.dest.resolve(), yes=args.yes)
    except ManifestError as exc:
        print(f"E models: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FetchError as exc:
        print(f"E models: {exc}", file=sys.stderr)
        codes = {HubUnreachable: EXIT_OFFLINE, NotEnoughSpace: EXIT_SPACE, NotConfirmed: EXIT_NOT_CONFIRMED}
        return codes.get(type(exc), EXIT_FAILED)
    return 0


def model_report(manifest: Manifest, weights_dir: Path) -> list[dict[str, Any]]:
    """One row per manifest model: files present, bytes on disk, and whether they verify."""
    from models.fetch import SIZE_ONLY, VerifyCache, file_state, human, is_ok, jobs_for

    cache = VerifyCache(weights_dir)
    Pick = tuple[str, str | None, str | None]  # label, translator size, voice name
    picks: list[Pick] = [(f"translator {s}", s, None) for s in manifest.translators]
    picks += [(f"voice {v}", None, v) for v in manifest.voices]
    rows = []
    for label, size, voice in picks:
        jobs = jobs_for(manifest, size, voice, weights_dir)
        states = [file_state(j, cache, progress=True) for j in jobs]
        present = [j for j, s in zip(jobs, states, strict=True) if s != "missing"]
        bad = [
            f"{j.file.name}: {s}"
            for j, s in zip(jobs, states, strict=True)
            if s not in ("missing",) and not is_ok(s)
        ]
        flag = f"--translator {size} --voice none" if size else f"--voice {voice} --translator none"
        if bad:
            status, fix = (
                "bad: " + "; ".join(bad),
                f"stream-tts models fetch {flag}  (replaces the bad files)",
            )
        elif not present:
            total = sum(j.file.size or 0 for j in jobs)
            status, fix = "not fetched", f"stream-tts models fetch {flag}  ({human(total)})"
        elif len(present) < len(jobs):
            status, fix = (
                f"incomplete: {len(jobs) - len(present)} files missing",
                f"stream-tts models fetch {flag}",
            )
        else:
            size_only = sum(s == SIZE_ONLY for s in states)
            status = (
                f"ok: {len(states) - size_only} verified (sha256), {size_only} size-checked only "
                "(no public sha256), not verified"
                if size_only
                else "ok (sha256 verified)"
            )
            fix = ""
        rows.append(
            {
                "model": label,
                "files": f"{len(present)}/{len(jobs)}",
                "bytes": sum(j.dest.stat().st_size for j in present),
                "status": status,
                "fix": fix,
                "path": str(jobs[0].dest if size else jobs[0].dest.parent),
            }
        )
    return rows


def cli_list(manifest: Manifest, weights_dir: Path, as_json: bool) -> int:
    from rich.console import Console
    from rich.table import Table

    from models.fetch import human

    rows = model_report(manifest, weights_dir)
    if as_json:
        for row in rows:
            print(json.dumps(row))
    else:
        table = Table(title=f"models in {weights_dir}", title_justify="left")
        for col in ("model", "files", "on disk", "status", "to fix"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["model"], r["files"], human(r["bytes"]) if r["bytes"] else "-", r["status"], r["fix"]
            )
        Console(width=max(Console().width, 120)).print(table)
    return 1 if any(r["status"].startswith(("bad", "incomplete")) for r in rows) else 0
