"""`stream-tts stop | pause | resume | volume N | devices`: the user's hands on playback.

The first four send a control message to ingest, which re-publishes it to every stage on the
control channel (stop = Cancel: every stage drops its queue; playback goes quiet within ~100 ms).
`devices` lists the output devices PortAudio sees, and which one [playback] device picks.
"""

from __future__ import annotations

import argparse
import json
import sys

from bus.client import IngestUnavailable, Publisher
from bus.config import ConfigError, add_config_option, load_config
from bus.messages import (
    MAX_SPEED,
    MAX_VOLUME,
    MIN_SPEED,
    MODES,
    Cancel,
    ControlMessage,
    Mode,
    Pause,
    Resume,
    Speed,
    Volume,
)


def _send(prog: str, argv: list[str], make: type[ControlMessage] | None, describe: str) -> int:
    parser = argparse.ArgumentParser(prog=f"stream-tts {prog}", description=describe)
    if prog == "stop":
        parser.add_argument("--stream", default="", help="only this stream (default: every stream)")
    if prog == "volume":
        parser.add_argument("level", help=f"percent, 0..{int(MAX_VOLUME * 100)} (100 = as synthesized)")
    if prog == "mode":
        parser.add_argument(
            "mode", choices=MODES, help="full: every sentence; brief: a long answer as a summary"
        )
        parser.add_argument("--stream", default="", help="only this stream (default: every stream)")
    if prog == "speed":
        parser.add_argument(
            "factor", help=f"{MIN_SPEED}..{MAX_SPEED} (1 = as the voice speaks; 1.5 = half as fast again)"
        )
        parser.add_argument("--stream", default="", help="only this stream (default: every stream)")
    add_config_option(parser)
    args = parser.parse_args(argv)
    msg: ControlMessage
    if prog == "stop":
        msg = Cancel(stream=args.stream, reason="stream-tts stop")
    elif prog == "volume":
        try:
            level = float(args.level.rstrip("%")) / 100.0
        except ValueError:
            level = -1.0
        if not 0.0 <= level <= MAX_VOLUME:
            print(
                f"E volume: {args.level!r} is not a percentage within 0..{int(MAX_VOLUME * 100)}",
                file=sys.stderr,
            )
            return 2
        msg = Volume(level=level)
    elif prog == "mode":
        msg = Mode(mode=args.mode, stream=args.stream)
    elif prog == "speed":
        try:
            factor = float(args.factor.rstrip("x"))
        except ValueError:
            factor = -1.0
        if not MIN_SPEED <= factor <= MAX_SPEED:
            print(f"E speed: {args.factor!r} is not a speed within {MIN_SPEED}..{MAX_SPEED}", file=sys.stderr)
            return 2
        msg = Speed(factor=factor, stream=args.stream)
    else:
        assert make is not None
        msg = make()
    try:
        config = load_config(args.config)
        with Publisher(config) as pub:
            pub.control(msg)
    except (IngestUnavailable, ConfigError) as exc:
        print(f"E {prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def cli_stop(argv: list[str]) -> int:
    return _send("stop", argv, None, "Stop speaking now and drop everything queued, at every stage.")


def cli_pause(argv: list[str]) -> int:
    return _send("pause", argv, Pause, "Pause playback where it is (nothing is dropped).")


def cli_resume(argv: list[str]) -> int:
    return _send("resume", argv, Resume, "Resume playback after `stream-tts pause`.")


def cli_volume(argv: list[str]) -> int:
    return _send("volume", argv, None, "Set the playback volume in percent (100 = as synthesized).")


def cli_mode(argv: list[str]) -> int:
    return _send(
        "mode", argv, None, "Say every sentence of an answer (full), or a summary of a long one (brief)."
    )


def cli_speed(argv: list[str]) -> int:
    return _send("speed", argv, None, "Speak faster or slower from the next sentence on (pitch unchanged).")


def cli_devices(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts devices", description="List audio output devices.")
    parser.add_argument("--json", action="store_true", help="one JSON object per device")
    add_config_option(parser)
    args = parser.parse_args(argv)
    from nodes.playback.device.output import AudioDeviceError, SoundDeviceOutput, list_devices
    from nodes.playback.settings import PlaybackConfigError, PlaybackSettings

    try:
        settings = PlaybackSettings.from_section(load_config(args.config).section("playback"))
        devices = list_devices()
    except (ConfigError, PlaybackConfigError) as exc:
        print(f"E devices: {exc}", file=sys.stderr)
        return 2
    except AudioDeviceError as exc:
        print(f"E devices: {exc}", file=sys.stderr)
        devices = []
    if args.json:
        for d in devices:
            print(json.dumps(d, ensure_ascii=False))
    else:
        for d in devices:
            mark = "*" if d["default"] else " "
            where = f"{d['hostapi']}, {d['channels']} ch, {d['default_rate_hz']} Hz"
            print(f"{mark} {d['index']:>3}  {d['name']}  ({where})")
    try:
        chosen = SoundDeviceOutput(settings.device).probe()
        print(f"I devices: playback would use {chosen!r} (sink = {settings.sink!r})", file=sys.stderr)
    except AudioDeviceError as exc:
        print(f"W devices: no usable output device: {exc}; playback would write WAV files", file=sys.stderr)
    return 0
