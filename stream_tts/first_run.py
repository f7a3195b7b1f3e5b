"""`stream-tts run` (what `make run` calls after setup): from a fresh clone to Japanese speech.

Four steps, each saying what it does and ending, when it stops, with what to type next:
  1. models    the weights the config wants, fetched if missing (asks before many GB: --yes)
  2. doctor    every check; an error stops here with its fix
  3. up        the pipeline under supervisord, waiting until every node is ready
  4. greeting  one English sentence through the whole pipeline, spoken in Japanese
A machine that cannot download stops at step 1 with what to fetch by hand, and points at
`stream-tts up --tiny` to try the plumbing on tiny random-weight models.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bus.config import ENV_DATA_DIR, Config, ConfigError, add_config_option, load_config

STEPS = 4
GREETING = "Hello! Stream TTS is ready."
GREETING_TIMEOUT_S = 300.0  # CPU-only machines take a while for the first sentence
NEXT = (
    "Next:\n"
    "  stream-tts say 'Any English sentence.'       speak something\n"
    "  claude -p --output-format stream-json --verbose 'your task' | stream-tts pipe\n"
    "  stream-tts status | stream-tts tap | stream-tts down"
)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def step(n: int, what: str) -> None:
    say(f"\n==> [{n}/{STEPS}] {what}")


def ensure_models(config: Config, yes: bool) -> int:
    """Fetch what the config's default model paths lack; 0 when both models are there."""
    from models.fetch import FetchError, HubUnreachable, NotConfirmed, NotEnoughSpace, fetch
    from models.manifest import DEFAULT_VOICE, WEIGHTS_DIR, load_manifest
    from stream_tts.commands.models import EXIT_NOT_CONFIRMED, EXIT_OFFLINE, EXIT_SPACE
    from stream_tts.doctor.checks import model_paths

    gguf, voice = model_paths(config)
    if gguf.is_file() and voice.is_dir():
        say(f"I run: translator {gguf}\nI run: voice {voice}")
        if "model_dir" not in config.section("synthesize"):
            ensure_extra_files(voice, yes)
        return 0
    size = str(config.section("translate").get("size", "auto"))
    if size == "auto":  # what the node would load: the best translator for this machine's memory
        from models.choose import choose_translator, detect_memory

        choice = choose_translator(load_manifest(), detect_memory())
        size = choice.size
        say(f"I run: translator {size}, picked for this machine: {choice.reason}")
    want_t = size if not gguf.is_file() and "model" not in config.section("translate") else None
    want_v = DEFAULT_VOICE if not voice.is_dir() and "model_dir" not in config.section("synthesize") else None
    if (not gguf.is_file() and want_t is None) or (not voice.is_dir() and want_v is None):
        say(f"E run: the config names a model that is not there: {gguf if not gguf.is_file() else voice}")
        say("Next: fix [translate] model / [synthesize] model_dir in the config (or drop them: defaults)")
        return 1
    try:
        fetch(load_manifest(), want_t, want_v, WEIGHTS_DIR, yes=yes)
    except FetchError as exc:
        say(f"E run: {exc}")
        if isinstance(exc, HubUnreachable):
            say(
                "Next: fetch the files as above, then `make run` again; or try the plumbing: "
                "stream-tts up --tiny"
            )
            return EXIT_OFFLINE
        if isinstance(exc, NotConfirmed):
            say("Next: make run YES=1   (or: stream-tts run --yes)")
            return EXIT_NOT_CONFIRMED
        say("Next: fix what the message says, then `make run` again (downloads resume)")
        return EXIT_SPACE if isinstance(exc, NotEnoughSpace) else 1
    return 0


def ensure_extra_files(voice: Path, yes: bool) -> None:
    """A voice folder fetched before the manifest listed its extra files (the default voice's
    prompt): fetch just those. A failure only warns: a configured or stored voice needs no prompt,
    and doctor's voice row says when no voice is left."""
    from models.fetch import FetchError, fetch
    from models.manifest import DEFAULT_VOICE, WEIGHTS_DIR, ManifestError, load_manifest

    try:
        manifest = load_manifest()
        if all((voice / f.name).is_file() for f in manifest.voice(DEFAULT_VOICE).extra):
            return
        fetch(manifest, None, DEFAULT_VOICE, WEIGHTS_DIR, yes=yes, extra_only=True)
    except (FetchError, ManifestError) as exc:
        say(f"W run: the voice's extra files were not fetched: {exc}")


def greet(config: Config, timeout_s: float) -> int:
    """Say GREETING and wait until playback has played it (or failed it)."""
    from bus.client import IngestUnavailable, Publisher
    from bus.events import Kind
    from bus.tap import events, subscribe

    stream = f"greeting-{int(time.time())}"
    tap = subscribe(config)
    t0 = time.monotonic()
    try:
        try:
            with Publisher(config) as pub:
                pub.send(stream, GREETING, source="run")
        except IngestUnavailable as exc:
            say(f"E run: {exc}")
            return 1
        say(f'I run: saying "{GREETING}"')
        for ev in events(tap, timeout_s):
            if ev.stream != stream:
                continue
            if ev.kind == "error" and not ev.detail.get("fatal"):  # the journal sends it again
                say(f"W run: {ev.node}: {ev.detail.get('error') or ev.detail}; waiting for the retry")
            elif ev.kind in ("failed", "error"):
                say(f"E run: {ev.node} could not speak the greeting: {ev.detail.get('reason') or ev.detail}")
                return 1
            if ev.node == "playback" and ev.kind == Kind.FINISHED:
                where = (
                    "through the sound device"
                    if ev.detail.get("sink") != "wav"
                    else f"into {ev.detail.get('wav')}"
                )
                say(f"I run: greeting played {where} ({time.monotonic() - t0:.1f} s after it was sent)")
                return 0
    finally:
        tap.close(linger=0)
    say(
        f"E run: the greeting was not played within {timeout_s:.0f} s. "
        "Look: stream-tts status; stream-tts tap"
    )
    return 1


def cli_run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts run", description=__doc__.split("\n\n")[0])
    add_config_option(parser)
    parser.add_argument("--data-dir", help="logs, journal, WAVs and the supervisord socket")
    parser.add_argument("--yes", "-y", action="store_true", help="download the models without asking")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny random-weight models: the plumbing, no download"
    )
    parser.add_argument("--quiet", action="store_true", help="no test tone in the doctor step")
    parser.add_argument(
        "--timeout", type=float, default=GREETING_TIMEOUT_S, help="seconds to wait for the greeting"
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.data_dir:
        env[ENV_DATA_DIR] = str(Path(args.data_dir).resolve())
    try:
        config = load_config(args.config, env)
    except ConfigError as exc:
        say(f"E run: {exc}")
        return 2

    step(1, "models" + (" (tiny random-weight models: noise, but the real code path)" if args.tiny else ""))
    if args.tiny:
        from stream_tts.doctor.report import tiny_config_path

        config = load_config(tiny_config_path(config), {**env, ENV_DATA_DIR: str(config.data_dir)})
        say(f"I run: tiny models ready ({config.path})")
    elif rc := ensure_models(config, args.yes):
        return rc

    step(2, "doctor" + ("" if args.quiet else " (you should hear a short tone)"))
    from stream_tts.doctor.report import print_table, run_checks, summary

    rows = run_checks(config, play=not args.quiet)
    print_table(rows, "stream-tts doctor")
    say(summary(rows))
    if any(r.status == "error" for r in rows):
        say("Next: fix the errors above (the fix column), then `make run` again")
        return 1

    step(3, "up: starting the pipeline under supervisord (loading the models can take a minute)")
    from stream_tts.supervise import start

    if rc := start(config, timeout_s=max(args.timeout, 60)):
        return rc

    step(4, "greeting")
    if rc := greet(config, args.timeout):
        return rc
    say(f"\nI run: stream-tts is up{' on tiny models' if args.tiny else ''}.\n{NEXT}")
    return 0
