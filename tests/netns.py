"""Test hosts: Linux network namespaces joined by a veth pair, made and removed by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (make setup installs it)"
    probe = f"sttsprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Host:
    ns: str
    addr: str

    def popen(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("wb")
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )

    def run(
        self, args: list[str], env: dict[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self) -> list[str]:
        return [sys.executable]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def hosts(n: int, subnet: int = 213) -> Iterator[list[Host]]:
    """n hosts 10.<subnet>.<pid%250>.1..n on one bridge-less star: host 0 is the hub."""
    tag = os.getpid() % 250
    names = [f"stts{os.getpid()}h{i}" for i in range(n)]
    made: list[str] = []
    try:
        for name in names:
            _ip("netns", "add", name)
            made.append(name)
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        out = [Host(names[0], f"10.{subnet}.{tag}.1")]
        for i, name in enumerate(names[1:], start=1):
            # One veth pair per spoke: hub side 10.S.T.(100+i), spoke side 10.S.T.(i+1), /32 routes.
            a, b = f"sv{os.getpid() % 10000}a{i}", f"sv{os.getpid() % 10000}b{i}"
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", names[0])
            _ip("link", "set", b, "netns", name)
            spoke = f"10.{subnet}.{tag}.{i + 1}"
            hub = out[0].addr
            _ip("netns", "exec", names[0], "ip", "addr", "add", hub, "dev", a)
            _ip("netns", "exec", names[0], "ip", "link", "set", a, "up")
            _ip("netns", "exec", names[0], "ip", "route", "add", spoke, "dev", a)
            _ip("netns", "exec", name, "ip", "addr", "add", spoke, "dev", b)
            _ip("netns", "exec", name, "ip", "link", "set", b, "up")
            _ip("netns", "exec", name, "ip", "route", "add", hub, "dev", b)
            out.append(Host(name, spoke))
        yield out
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "pids", name], capture_output=True)
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
