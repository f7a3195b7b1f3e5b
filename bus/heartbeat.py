"""A node's heartbeat: a thread with its own PUB socket publishes the node's state and counters
every HEARTBEAT_S, so `up`, `status` and the tap see a node even while its engine is busy."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Protocol

import zmq

from bus.config import Config
from bus.events import Kind
from bus.messages import TapEvent, encode

HEARTBEAT_S = 1.0  # state and counters to the tap; `up` and `status` read them


class Beating(Protocol):
    """What a heartbeat reads of its node (bus.node.Node): read on every beat, never cached."""

    @property
    def name(self) -> str: ...

    config: Config
    state: str
    state_detail: str
    counters: dict[str, int]


class Heartbeat:
    """A thread with its own PUB socket: the node's state reaches the tap even mid-inference."""

    def __init__(self, node: Beating, ctx: zmq.Context) -> None:
        self.node = node
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{node.name}-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        sock = self.node.config.endpoints.connect_socket(self.ctx, "tap_in")
        sock.setsockopt(zmq.SNDHWM, 100)
        try:
            while not self._stop.is_set():
                n = self.node
                ev = TapEvent(
                    node=n.name,
                    kind=Kind.HEARTBEAT,
                    detail={"state": n.state, "error": n.state_detail, "pid": os.getpid(), **n.counters},
                    wall_ns=time.time_ns(),
                    mono_ns=time.monotonic_ns(),
                )
                with contextlib.suppress(zmq.ZMQError):
                    sock.send_multipart(encode(ev), flags=zmq.NOBLOCK)
                self._stop.wait(HEARTBEAT_S)
        finally:
            sock.close(linger=0)
