"""Where each socket of the bus lives, and which side binds it.

By default every endpoint is an ipc:// socket in one private folder of this account (mode 0700;
bus/private.py), derived from the data directory alone, so every process of one pipeline agrees:

  <data_dir>/run/bus/<name>.sock, or, when that path is too long for a Unix socket address
  (107 bytes on Linux, 103 on macOS), /tmp/stream-tts-<uid>-<hash of the data dir>/<name>.sock

  text        ingest binds SUB       producers (say, pipe, hook, Publisher) connect XPUB
  translate   translate binds PULL   ingest connects PUSH
  synthesize  synthesize binds PULL  translate connects PUSH
  playback    playback binds PULL    synthesize connects PUSH
  acks        ingest binds PULL      playback (played) and any stage (failed) connect PUSH
  control     ingest binds PUB       every other node connects SUB (cancel, flush)
  tap_in      tap binds XSUB         every node connects PUB (events)
  tap_out     tap binds XPUB         `stream-tts tap`, `up`, `status` connect SUB

Another account can neither enter that folder nor connect to its sockets (docs/configuration.md,
"What is private"). Whoever comes first, binder or connector, makes the folder 0700; a folder that
is not ours and 0700 is refused. A socket file left behind (zmq does not remove it when its socket
closes, nor does a crash) is rebound once nobody answers on it: zmq unlinks it and binds; one that
somebody answers on is refused, like a TCP port in use.
Connectors retry an ipc address that is not there yet just as they retry a TCP one.

The consumer of a stage binds (the stable address); producers connect, so a restarted producer
reconnects by itself. Any endpoint moves with the TOML config (`[endpoints] translate =
"tcp://10.0.0.2:57101"`; `[bind]` gives the address the owner binds when it differs, e.g.
"tcp://*:57101") or with an environment variable STREAM_TTS_ENDPOINT_<NAME> (and
STREAM_TTS_BIND_<NAME>), which wins over the file. TCP beyond loopback is always CURVE
(bus/security.py); TCP on loopback is allowed without it, and then any account on the machine can
connect (the doctor warns). The conventional TCP ports are BASE_PORT + the offset in LAYOUT
(57100-57107, `tcp_endpoints`).

Several workers of one stage: each worker binds its own address, and the connectors get them all,
`[endpoints] translate = ["tcp://10.0.0.2:57101", "tcp://10.0.0.3:57101"]` (env: comma-separated).
The upstream PUSH then deals sentences round-robin over the workers that are up (ZMQ_IMMEDIATE:
nothing is queued for a worker that is down; its in-flight work comes back through the journal),
and playback puts them back in order. Only stages whose unit of work is one message can be shared
(SHAREABLE): a sentence's clauses must all reach one synthesize worker, which round-robin would not do.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bus.private import PrivacyError, ensure_private_dir
from bus.security import is_loopback, require_keys, secure_client, secure_server

BASE_PORT = 57100
HOST = "127.0.0.1"

# name -> (offset in the TCP port block, socket type of the side that binds, socket type of a connector)
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
IPC_PATH_MAX = 103 if sys.platform == "darwin" else 107  # bytes of a Unix socket path (sun_path - NUL)
SOCKET_SUFFIX = ".sock"
SHORT_ROOT = Path("/tmp")  # the fallback folder's parent: the same for every process of the user


class EndpointError(ValueError):
    """An endpoint name or address in config or environment is not usable."""


def bus_dir(data_dir: Path) -> Path:
    """The private folder of the default ipc sockets of the pipeline whose data dir is `data_dir`
    (resolved): <data_dir>/run/bus, or /tmp/stream-tts-<uid>-<hash> when the longest socket path
    under the first would not fit a Unix socket address."""
    folder = data_dir / "run" / "bus"
    longest = max(len(os.fsencode(_socket_path(folder, name))) for name in LAYOUT)
    if longest <= IPC_PATH_MAX:
        return folder
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    return SHORT_ROOT / f"stream-tts-{os.geteuid()}-{digest}"


def default_endpoints(folder: Path) -> dict[str, str]:
    """Every endpoint an ipc socket in `folder` (bus_dir of the data dir)."""
    return {name: f"ipc://{_socket_path(folder, name)}" for name in LAYOUT}


def tcp_endpoints(host: str = HOST, base_port: int = BASE_PORT) -> dict[str, str]:
    """The conventional TCP port block, for a bus that is moved onto TCP."""
    return {name: f"tcp://{host}:{base_port + off}" for name, (off, _, _) in LAYOUT.items()}


def _socket_path(folder: Path, name: str) -> Path:
    return folder / f"{name}{SOCKET_SUFFIX}"


def ipc_path(address: str) -> Path | None:
    """The socket file of an ipc:// address (None for another transport, or Linux's abstract
    namespace, ipc://@name, which has no file and no permissions)."""
    if not address.startswith("ipc://") or address.startswith("ipc://@"):
        return None
    return Path(address[len("ipc://") :])


def answers(path: Path, timeout_s: float = 0.5) -> bool:
    """True when something accepts a connection on the Unix socket `path`; False when nothing is
    there or the file is a stale socket that nobody listens on any more."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except TimeoutError:
            return True  # a full backlog: somebody is there
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                return False
            raise
    return True


def prepare_ipc(name: str, address: str, binding: bool) -> None:
    """Before an ipc socket binds or connects: a path that fits, its folder ours and 0700 (made if
    missing), and, to bind, nobody else answering there (a stale file from a crash is fine)."""
    path = ipc_path(address)
    if path is None:
        return
    if len(os.fsencode(path)) > IPC_PATH_MAX:
        raise EndpointError(
            f"endpoint {name}: {path} is {len(os.fsencode(path))} bytes, longer than a Unix socket "
            f"path may be here ({IPC_PATH_MAX}); pick a shorter one"
        )
    try:
        ensure_private_dir(path.parent)
    except PrivacyError as exc:
        raise EndpointError(f"endpoint {name}: {exc}") from exc
    if not binding or not path.exists():
        return
    try:
        taken = answers(path)
    except OSError as exc:  # not ours to connect to (permissions): not ours to take over either
        raise EndpointError(f"cannot bind {name} at {address}: {exc.strerror or exc}") from exc
    if taken:
        raise EndpointError(
            f"cannot bind {name} at {address}: a program already answers on it "
            "(another stream-tts with this data dir already running? `stream-tts status`)"
        )


@dataclass(frozen=True)
class Endpoints:
    """Connect addresses (`connect`: the first; `peers`: all of them) and bind addresses (`bind`)."""

    connect: Mapping[str, str]
    bind: Mapping[str, str]
    keys_dir: Path | None = None  # CURVE keys for sockets beyond loopback (bus/security.py)
    peers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # every worker of a stage
    folder: Path | None = None  # the private folder of the default ipc sockets (bus_dir)

    @classmethod
    def load(
        cls,
        table: Mapping[str, object] | None = None,
        binds: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        folder: Path,
    ) -> Endpoints:
        """`folder`: where the default ipc sockets live (bus_dir of the data dir)."""
        env = os.environ if environ is None else environ
        peers: dict[str, tuple[str, ...]] = {
            name: (addr,) for name, addr in default_endpoints(folder).items()
        }
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
        return cls(connect=connect, bind=full_bind, peers=peers, folder=folder)

    def bind_socket(self, ctx: zmq.Context, name: str) -> zmq.Socket:
        """The owner's socket of `name`, options set, bound."""
        prepare_ipc(name, self.bind[_known(name)], binding=True)
        sock = ctx.socket(LAYOUT[name][1])
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
        addrs = self.peers.get(_known(name)) or (self.connect[name],)
        for addr in addrs:
            prepare_ipc(name, addr, binding=False)
        sock = ctx.socket(LAYOUT[name][2] if kind is None else kind)
        apply_options(sock)
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
