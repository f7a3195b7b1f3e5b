"""Where each socket of the bus lives, and which side binds it.

The port block (all on 127.0.0.1 by default, documented in the README):

  57100  text        ingest binds SUB       producers (say, pipe, hook, Publisher) connect XPUB
  57101  translate   translate binds PULL   ingest connects PUSH
  57102  synthesize  synthesize binds PULL  translate connects PUSH
  57103  playback    playback binds PULL    synthesize connects PUSH
  57104  acks        ingest binds PULL      playback (played) and any stage (failed) connect PUSH
  57105  control     ingest binds PUB       every other node connects SUB (cancel, flush)
  57106  tap_in      tap binds XSUB         every node connects PUB (events)
  57107  tap_out     tap binds XPUB         `stream-tts tap`, `up`, `status` connect SUB

The consumer of a stage binds (the stable address); producers connect, so a restarted producer
reconnects by itself and several workers can share a stage. Any endpoint moves with the TOML
config (`[endpoints] translate = "tcp://10.0.0.2:57101"`; `[bind]` gives the address the owner
binds when it differs, e.g. "tcp://*:57101") or with an environment variable
STREAM_TTS_ENDPOINT_<NAME> (and STREAM_TTS_BIND_<NAME>), which wins over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq

from bus.security import is_loopback, require_keys, secure_client, secure_server

BASE_PORT = 57100
HOST = "127.0.0.1"

# name -> (offset in the port block, socket type of the side that binds, socket type of a connector)
LAYOUT: dict[str, tuple[int, int, int]] = {
    "text": (0, zmq.SUB, zmq.XPUB),
    "translate": (1, zmq.PULL, zmq.PUSH),
    "synthesize": (2, zmq.PULL, zmq.PUSH),
    "playback": (3, zmq.PULL, zmq.PUSH),
    "acks": (4, zmq.PULL, zmq.PUSH),
    "control": (5, zmq.PUB, zmq.SUB),
    "tap_in": (6, zmq.XSUB, zmq.PUB),
    "tap_out": (7, zmq.XPUB, zmq.SUB),
}

# Socket options, the same for every socket of the bus (see Endpoints.apply_options).
HWM = 1000  # messages queued per peer before a sender blocks: bounded, never unbounded
LINGER_MS = 1000  # how long close() may wait to deliver what is queued
MAX_MSG_BYTES = 17 * 1024 * 1024  # a larger inbound frame drops the peer before it is buffered
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000


class EndpointError(ValueError):
    """An endpoint name or address in config or environment is not usable."""


def default_endpoints(host: str = HOST, base_port: int = BASE_PORT) -> dict[str, str]:
    return {name: f"tcp://{host}:{base_port + off}" for name, (off, _, _) in LAYOUT.items()}


@dataclass(frozen=True)
class Endpoints:
    """Connect addresses (`connect`) and bind addresses (`bind`) of every bus socket."""

    connect: Mapping[str, str]
    bind: Mapping[str, str]
    keys_dir: Path | None = None  # CURVE keys for sockets beyond loopback (bus/security.py)

    @classmethod
    def load(
        cls,
        table: Mapping[str, object] | None = None,
        binds: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Endpoints:
        env = os.environ if environ is None else environ
        connect = default_endpoints()
        bind: dict[str, str] = {}
        for source, target in ((table or {}, connect), (binds or {}, bind)):
            for name, addr in source.items():
                target[_known(name)] = _address(name, addr)
        for name in LAYOUT:
            if value := env.get(f"STREAM_TTS_ENDPOINT_{name.upper()}"):
                connect[name] = _address(name, value)
            if value := env.get(f"STREAM_TTS_BIND_{name.upper()}"):
                bind[name] = _address(name, value)
        full_bind = {name: bind.get(name, connect[name]) for name in LAYOUT}
        return cls(connect=connect, bind=full_bind)

    def bind_socket(self, ctx: zmq.Context, name: str) -> zmq.Socket:
        """The owner's socket of `name`, options set, bound."""
        sock = ctx.socket(LAYOUT[_known(name)][1])
        apply_options(sock)
        if not is_loopback(self.bind[name]):
            try:
                secure_server(sock, ctx, require_keys(self.keys_dir, f"binding {name} at {self.bind[name]}"))
            except Exception:
                sock.close(0)
                raise
        try:
            sock.bind(self.bind[name])
        except zmq.ZMQError as exc:
            sock.close(0)
            raise EndpointError(
                f"cannot bind {name} at {self.bind[name]}: {exc} "
                "(another stream-tts already running? `stream-tts status`)"
            ) from exc
        return sock

    def connect_socket(self, ctx: zmq.Context, name: str) -> zmq.Socket:
        """A connector's socket to `name`, options set, connected."""
        sock = ctx.socket(LAYOUT[_known(name)][2])
        apply_options(sock)
        if not is_loopback(self.connect[name]):
            try:
                secure_client(
                    sock, require_keys(self.keys_dir, f"connecting to {name} at {self.connect[name]}")
                )
            except Exception:
                sock.close(0)
                raise
        sock.connect(self.connect[name])
        return sock


def apply_options(sock: zmq.Socket) -> None:
    """Options before bind/connect: they apply to the pipes created then."""
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MSG_BYTES)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    if sock.type in (zmq.SUB,):
        sock.setsockopt(zmq.SUBSCRIBE, b"")


def _known(name: str) -> str:
    if name not in LAYOUT:
        raise EndpointError(f"unknown endpoint {name!r}; known: {', '.join(LAYOUT)}")
    return name


def _address(name: str, addr: object) -> str:
    if not isinstance(addr, str) or "://" not in addr:
        raise EndpointError(f"endpoint {name}: {addr!r} is not an address like tcp://127.0.0.1:57101")
    scheme = addr.split("://", 1)[0]
    if scheme not in ("tcp", "ipc", "inproc"):
        raise EndpointError(f"endpoint {name}: transport {scheme!r} not supported (tcp, ipc, inproc)")
    return addr
