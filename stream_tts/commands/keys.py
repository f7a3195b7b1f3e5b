"""`stream-tts keys`: CURVE keys for a bus that leaves this machine (bus/security.py uses them)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import zmq.auth

from bus.config import ConfigError, add_config_option, load_config
from bus.security import make_keys


def cli_keys(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-tts keys",
        description="Make CURVE keys for a bus that leaves loopback (never overwrites existing ones).",
    )
    parser.add_argument(
        "--dir", type=Path, help="keys folder (default: [security] keys_dir or <data_dir>/keys)"
    )
    parser.add_argument(
        "--authorize",
        type=Path,
        metavar="CLIENT_KEY",
        help="also allow this client public key (another machine's client.key)",
    )
    add_config_option(parser)
    args = parser.parse_args(argv)
    folder = args.dir
    if folder is None:
        try:
            folder = load_config(args.config).endpoints.keys_dir
        except ConfigError as exc:
            print(f"E keys: {exc}", file=sys.stderr)
            return 2
    assert folder is not None
    keys = make_keys(folder)
    if args.authorize:
        try:
            public, _ = zmq.auth.load_certificate(args.authorize)
        except (OSError, ValueError) as exc:
            print(f"E keys: cannot read a public key from {args.authorize}: {exc}", file=sys.stderr)
            return 2
        if not public:
            print(f"E keys: {args.authorize} holds no public key", file=sys.stderr)
            return 2
        shutil.copy(args.authorize, keys.authorized / args.authorize.name)
    print(f"keys in {keys.folder}")
    print(f"  server public key  {keys.server_public.decode()}  (server.key*: the same on every machine)")
    print(
        f"  client public key  {keys.client_public.decode()}  (client.key: into other machines' authorized/)"
    )
    print(f"  authorized clients {len(list(keys.authorized.glob('*.key')))}")
    return 0
