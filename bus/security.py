"""CURVE for every socket that leaves loopback (pyzmq's `zmq.auth`), and `stream-tts keys`.

A keys folder (default <data_dir>/keys, or [security] keys_dir) holds:
  server.key / server.key_secret   the bus's server pair: copy it to every machine that binds
  client.key / client.key_secret   this machine's client pair
  authorized/*.key                 client public keys allowed to connect to what this machine binds
A socket bound beyond loopback is a CURVE server and only the authorized clients get in (the
authenticator thread of pyzmq checks each handshake); a socket connecting beyond loopback is a
CURVE client. Without keys, a node refuses to bind beyond loopback and says how to make them.
"""

from __future__ import annotations

import ipaddress
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

AUTH_DOMAIN = "*"


class SecurityError(RuntimeError):
    """A socket would leave loopback without the CURVE keys that must guard it."""


@dataclass(frozen=True)
class Keys:
    folder: Path
    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    @property
    def authorized(self) -> Path:
        return self.folder / "authorized"


def is_loopback(address: str) -> bool:
    """True for ipc/inproc and tcp on 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: assume it leaves the machine


def load_keys(folder: Path) -> Keys | None:
    try:
        server_public, server_secret = zmq.auth.load_certificate(folder / "server.key_secret")
        client_public, client_secret = zmq.auth.load_certificate(folder / "client.key_secret")
    except (OSError, ValueError):
        return None
    if server_secret is None or client_secret is None:
        return None
    return Keys(folder, server_public, server_secret, client_public, client_secret)


def make_keys(folder: Path) -> Keys:
    """Create whatever pair is missing (never overwrite) and authorize this machine's client."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    (folder / "authorized").mkdir(exist_ok=True)
    for name in ("server", "client"):
        if not (folder / f"{name}.key_secret").exists():
            zmq.auth.create_certificates(str(folder), name)
        (folder / f"{name}.key_secret").chmod(0o600)
    shutil.copy(folder / "client.key", folder / "authorized" / "this-machine.key")
    keys = load_keys(folder)
    assert keys is not None
    return keys


_authenticators: dict[int, ThreadAuthenticator] = {}
_auth_lock = threading.Lock()


def secure_server(sock: zmq.Socket, ctx: zmq.Context, keys: Keys) -> None:
    """Make `sock` (before bind) a CURVE server that admits only authorized client keys."""
    with _auth_lock:
        if id(ctx) not in _authenticators:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve(domain=AUTH_DOMAIN, location=str(keys.authorized))
            _authenticators[id(ctx)] = auth
    sock.setsockopt(zmq.ZAP_DOMAIN, AUTH_DOMAIN.encode())
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public
    sock.curve_server = True


def secure_client(sock: zmq.Socket, keys: Keys) -> None:
    """Make `sock` (before connect) a CURVE client of the bus's server key."""
    sock.curve_secretkey = keys.client_secret
    sock.curve_publickey = keys.client_public
    sock.curve_serverkey = keys.server_public


def require_keys(folder: Path | None, what: str) -> Keys:
    keys = load_keys(folder) if folder is not None else None
    if keys is None:
        raise SecurityError(
            f"{what} leaves this machine, and that needs CURVE keys, none found in {folder}. "
            "Run `stream-tts keys` on one machine, copy its server.key and server.key_secret to "
            "every machine, and each machine's client.key into the authorized/ folder of the "
            "machines it connects to."
        )
    return keys
