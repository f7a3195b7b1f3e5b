"""Where each socket of the bus lives, and which side binds it.

The port block (all on 127.0.0.1 by default, documented in docs/configuration.md):

  57100  text        ingest binds SUB       producers (say, pipe, hook, Publisher) connect XPUB
  57101  translate   translate binds PULL   ingest connects PUSH
  57102  synthesize  synthesize binds PULL  translate connects PUSH
  57103  playback    playback binds PULL    synthesize connects PUSH
  57104  acks        ingest binds PULL      playback (played) and any stage (failed) connect PUSH
  57105  control     ingest binds PUB       every other node connects SUB (cancel, flush)
  57106  tap_in      tap binds XSUB         every node connects PUB (events)
  57107  tap_out     tap binds XPUB         `stream-tts tap`, `up`, `status` connect SUB

The consumer of a stage binds (the stable address); producers connect, so a restarted producer
reconnects by itself. Any endpoint moves with the TOML config (`[endpoints] translate =
"tcp://10.0.0.2:57101"`; `[bind]` gives the address the owner binds when it differs, e.g.
"tcp://*:57101") or with an environment variable STREAM_TTS_ENDPOINT_<NAME> (and
STREAM_TTS_BIND_<NAME>), which wins over the file.

Several workers of one stage: each worker binds its own address, and the connectors get them all,
`[endpoints] translate = ["tcp://10.0.0.2:57101", "tcp://10.0.0.3:57101"]` (env: comma-separated).
The upstream PUSH then deals sentences round-robin over the workers that are up (ZMQ_IMMEDIATE:
nothing is queued for a worker that is down; its in-flight work comes back through the journal),
and playback puts them back in order. Only stages whose unit of work is one message can be shared
(SHAREABLE): a sentence's clauses must all reach one synthesize worker, which round-robin would not do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
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


SHAREABLE = ("translate",)  # endpoints that may list several worker addresses


class EndpointError(ValueError):
    """An endpoint name or address in config or environment is not usable."""


def default_endpoints(host: str = HOST, base_port: int = BASE_PORT) -> dict[str, str]:
    return {name: f"tcp://{host}:{base_port + off}" for name, (off, _, _) in LAYOUT.items()}


@dataclass(frozen=True)
class Endpoints:
    """Connect addresses (`connect`: the first; `peers`: all of them) and bind addresses (`bind`)."""

    connect: Mapping[str, str]
    bind: Mapping[str, str]
    keys_dir: Path | None = None  # CURVE keys for sockets beyond loopback (bus/security.py)
    peers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # every worker of a stage

    @classmethod
    def load(
        cls,
        table: Mapping[str, object] | None = None,
        binds: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Endpoints:
        env = os.environ if environ is None else environ
        peers: dict[str, tuple[str, ...]] = {name: (addr,) for name, addr in default_endpoints().items()}
        bind: dict[str, str] = {}
        for name, value in (table or {}).items():
            peers[_known(name)] = _addresses(name, value)
        for name, addr in (binds or {}).items():
            bind[_known(name)] = _address(name, addr)
        for name in LAYOUT:
            if value := env.get(f"STREAM_TTS_ENDPOINT_{name.upper()}"):
                peers[name] = _addresses(name, value.split(",") if "," in value else value)
            if value := env.get(f"STREAM_TTS_BIND_{name.upper()}"):
                bind[name] = _address(name, value)
        connect = {name: addrs[0] for name, addrs in peers.items()}
        full_bind = {name: bind.get(name, connect[name]) for name in LAYOUT}
        return cls(connect=connect, bind=full_bind, peers=peers)

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

    def connect_socket(self, ctx: zmq.Context, name: str, kind: int | None = None) -> zmq.Socket:
        """A connector's socket to `name` (to every worker's address), options set, connected;
        `kind` replaces the layout's socket type (an XPUB where a PUB must see its subscribers)."""
        sock = ctx.socket(LAYOUT[_known(name)][2] if kind is None else kind)
        apply_options(sock)
        addrs = self.peers.get(name) or (self.connect[name],)
        if len(addrs) > 1:  # deal only to workers that are there, not into a dead one's queue
            sock.setsockopt(zmq.IMMEDIATE, 1)
        remote = [a for a in addrs if not is_loopback(a)]
        if remote:
            try:
                secure_client(sock, require_keys(self.keys_dir, f"connecting to {name} at {remote[0]}"))
            except Exception:
                sock.close(0)
                raise
        for addr in addrs:
            sock.connect(addr)
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


def _addresses(name: str, value: object) -> tuple[str, ...]:
    """One address, or (for a SHAREABLE stage) a non-empty list of them."""
    if not isinstance(value, list):
        return (_address(name, value),)
    if name not in SHAREABLE:
        raise EndpointError(
            f"endpoint {name}: only {', '.join(SHAREABLE)} may list several workers "
            "(a sentence's clauses must reach one synthesize worker; playback is one)"
        )
    if not value:
        raise EndpointError(f"endpoint {name}: an empty list of addresses")
    return tuple(_address(name, a) for a in value)


def _address(name: str, addr: object) -> str:
    if not isinstance(addr, str) or "://" not in addr:
        raise EndpointError(f"endpoint {name}: {addr!r} is not an address like tcp://127.0.0.1:57101")
    scheme = addr.split("://", 1)[0]
    if scheme not in ("tcp", "ipc", "inproc"):
        raise EndpointError(f"endpoint {name}: transport {scheme!r} not supported (tcp, ipc, inproc)")
    return addr
