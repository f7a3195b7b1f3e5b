"""The one settings object every process builds from `--config` / STREAM_TTS_CONFIG.

A TOML file, every key optional (docs/configuration.md lists them all):

    data_dir = "var"                 # journal, played.jsonl, WAVs, logs, supervisord socket, and
                                     # (run/bus/) the bus's private ipc sockets
    [endpoints]  translate = "tcp://10.0.0.2:57101"     # see bus/endpoints.py; a list of addresses
                                                        # for several workers of a stage
    [bind]       translate = "tcp://*:57101"
    [ingest] [translate] [synthesize] [playback]        # each node reads its own section

Relative paths in the file are relative to the file; without a file, relative to the repo root.
STREAM_TTS_DATA_DIR overrides data_dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.endpoints import Endpoints, bus_dir

REPO_ROOT = Path(__file__).resolve().parent.parent  # a checkout, or site-packages when installed
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()


def user_data_dir() -> Path:
    """Where an installed copy keeps its data: the platform's per-user data folder."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "stream-tts"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "stream-tts"


DEFAULT_DATA_DIR = REPO_ROOT / "var" if IN_CHECKOUT else user_data_dir()
ENV_CONFIG = "STREAM_TTS_CONFIG"
ENV_DATA_DIR = "STREAM_TTS_DATA_DIR"
SECTIONS = ("ingest", "translate", "synthesize", "playback", "tap", "security")
# The longest a stream waits for a missing sentence, the same number at every stage: ingest gives a
# sentence up (a GivenUp on the control channel) once it has been its stream's next for this long
# without being played; playback, which waits for that word, goes on by itself only after twice as
# long (the word was lost). Top-level key `give_up_s`.
GIVE_UP_S = 120.0


class ConfigError(ValueError):
    """The config file is missing, not TOML, or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Config:
    endpoints: Endpoints
    data_dir: Path
    base_dir: Path
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    path: Path | None = None
    give_up_s: float = GIVE_UP_S

    def section(self, name: str) -> Mapping[str, Any]:
        return self.sections.get(name, {})

    def path_setting(self, section: str, key: str, default: str | Path) -> Path:
        """A path from a section, resolved against the config file's folder (or the repo)."""
        value = self.section(section).get(key, default)
        if not isinstance(value, str | Path):
            raise ConfigError(f"[{section}] {key} must be a path string, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    raw: dict[str, Any] = {}
    base_dir = REPO_ROOT
    cfg_path: Path | None = None
    if path is not None:
        cfg_path = Path(path).expanduser().resolve()
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {cfg_path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {cfg_path} is not valid TOML: {exc}") from None
        base_dir = cfg_path.parent
    for table in ("endpoints", "bind", *SECTIONS):
        if table in raw and not isinstance(raw[table], dict):
            raise ConfigError(f"[{table}] must be a table")
    data_value = env.get(ENV_DATA_DIR) or raw.get("data_dir")
    if data_value is None:
        data_dir = DEFAULT_DATA_DIR
    elif isinstance(data_value, str):
        data_dir = Path(data_value).expanduser()
        if not data_dir.is_absolute():
            data_dir = (Path.cwd() if env.get(ENV_DATA_DIR) else base_dir) / data_dir
    else:
        raise ConfigError(f"data_dir must be a string, got {data_value!r}")
    data_dir = data_dir.resolve()  # the default sockets' folder derives from it: one spelling
    endpoints = Endpoints.load(raw.get("endpoints"), raw.get("bind"), env, folder=bus_dir(data_dir))
    sections = {name: dict(raw.get(name, {})) for name in SECTIONS}
    keys_value = sections["security"].get("keys_dir")
    keys_dir = data_dir / "keys" if keys_value is None else Path(str(keys_value)).expanduser()
    if not keys_dir.is_absolute():
        keys_dir = base_dir / keys_dir
    endpoints = dataclasses.replace(endpoints, keys_dir=keys_dir.resolve())
    give_up_s = raw.get("give_up_s", GIVE_UP_S)
    if isinstance(give_up_s, bool) or not isinstance(give_up_s, int | float) or not 0 < give_up_s < 86400:
        raise ConfigError(f"give_up_s must be seconds, more than 0 and less than a day, got {give_up_s!r}")
    return Config(
        endpoints=endpoints,
        data_dir=data_dir.resolve(),
        base_dir=base_dir,
        sections=sections,
        path=cfg_path,
        give_up_s=float(give_up_s),
    )


def unknown_keys(name: str, section: Mapping[str, Any], known: Iterable[str]) -> str | None:
    """Why `[name]` is refused when it holds keys no node reads (a typo), naming the known ones;
    None when every key is known. Each section raises it as its own error type."""
    allowed = sorted(set(known))
    unknown = sorted(set(section) - set(allowed))
    if not unknown:
        return None
    return f"[{name}] unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}"


def add_config_option(parser: argparse.ArgumentParser, help_: str = "TOML config") -> None:
    """The `--config FILE` every command and node takes (one spelling, one default)."""
    parser.add_argument("--config", metavar="FILE", help=f"{help_} (default: ${ENV_CONFIG})")


def parse_with_config(
    parser: argparse.ArgumentParser, argv: list[str] | None, help_: str = "TOML config"
) -> tuple[argparse.Namespace, Config]:
    """Parse argv (with `--config` added) and load the config. A config that cannot be loaded
    ends the command as a usage error does: `E <command>: why` on stderr, exit status 2."""
    add_config_option(parser, help_)
    args = parser.parse_args(argv)
    try:
        return args, load_config(args.config)
    except ConfigError as exc:
        print(f"E {parser.prog.removeprefix('stream-tts ')}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
