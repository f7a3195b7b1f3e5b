"""`stream-tts voices`: the voices the synthesizer can use (stored clones and the model's own
speakers), and `voices add`, which clones one from a prompt recording
(nodes/synthesize/cosyvoice/voices.py does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bus.config import ConfigError, add_config_option, load_config
from bus.errors import EngineError
from nodes.synthesize.cosyvoice.load import fingerprint, load_spk2info
from nodes.synthesize.cosyvoice.voices import (
    DEFAULT_MODEL_DIR,
    DEFAULT_VOICE_NAME,
    PromptFrontend,
    VoiceBank,
    load_voice,
    make_voice,
    save_voice,
    voices_dir,
)
from nodes.synthesize.errors import UnknownVoice, VoiceError


def cli_voices(argv: list[str]) -> int:
    """`stream-tts voices [--config F]` lists; `stream-tts voices add NAME WAV [TEXT] [--instruct T]
    [--cross-lingual]` clones."""
    parser = argparse.ArgumentParser(prog="stream-tts voices", description="list or add synthesis voices")
    add_config_option(parser)
    sub = parser.add_subparsers(dest="cmd")
    add = sub.add_parser("add", help="clone a voice from a prompt WAV and its transcript")
    add.add_argument("name")
    add.add_argument("wav", type=Path)
    add.add_argument("text", nargs="?", default="", help="what is said in the WAV")
    add.add_argument("--instruct", default="", help="style/emotion text read before <|endofprompt|>")
    add.add_argument(
        "--cross-lingual",
        action="store_true",
        help="the WAV is in another language than the text to speak: its transcript stays out of the LM",
    )
    add.add_argument("--config", dest="config_add", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        config = load_config(getattr(args, "config_add", None) or args.config)
        model_dir = config.path_setting("synthesize", "model_dir", DEFAULT_MODEL_DIR)
        folder = voices_dir(config.data_dir)
        if args.cmd == "add":
            record = make_voice(
                PromptFrontend(model_dir), args.name, args.wav, args.text, args.instruct, args.cross_lingual
            )
            path = save_voice(record, folder)
            n = int(record["prompt_speech_token"].shape[1])
            print(f"{args.name}\t{path}\t{record['seconds']} s, {n} prompt tokens")
            return 0
        fp = fingerprint(model_dir) if model_dir.is_dir() else ""
        spk = load_spk2info(model_dir) if model_dir.is_dir() else {}
        bank = VoiceBank(spk, folder, fp, model_dir)
        for name in bank.stored_names():
            try:
                v = load_voice(folder / f"{name}.pt", fp or None)
                kind = "cloned (cross-lingual)" if v.cross_lingual else "cloned"
                print(
                    f"{name}\t{kind}\t{v.prompt_text[:40]}"
                    + (f"\tinstruct: {v.instruct}" if v.instruct else "")
                )
            except VoiceError as exc:
                print(f"{name}\tunusable\t{exc}")
        for name in spk:
            print(f"{name}\tmodel speaker\t{model_dir.name}")
        if not spk and DEFAULT_VOICE_NAME not in bank.stored_names() and bank.can_build_default():
            when = f"cloned from {bank.default_prompt} when synthesize starts"
            print(f"{DEFAULT_VOICE_NAME}\tnot made yet\t{when}")
        want = str(config.section("synthesize").get("voice", ""))
        if not fp:
            print(f"W voices: no model folder at {model_dir} ([synthesize] model_dir)", file=sys.stderr)
            return 0
        try:
            print(f'I voices: [synthesize] voice = "{want}": {bank.describe(want)}', file=sys.stderr)
        except UnknownVoice as exc:  # the node would fail every sentence with this: an error
            print(f'E voices: [synthesize] voice = "{want}": {exc}', file=sys.stderr)
            return 1
        except VoiceError as exc:
            print(f"W voices: {exc}", file=sys.stderr)
        return 0
    except (ConfigError, EngineError) as exc:
        print(f"E voices: {exc}", file=sys.stderr)
        return 1
