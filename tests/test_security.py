"""CURVE beyond loopback, across real network namespaces: with keys it works, without it nothing
reaches the pipeline, and a node will not bind beyond loopback without keys."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import tomli_w

from bus.security import is_loopback, load_keys, make_keys
from tests.conftest import free_ports
from tests.netns import hosts, netns_available

why_not = netns_available()

SENDER = """
import sys, numpy as np, zmq
from bus.config import load_config
from bus.messages import AudioChunk, encode
mode, seq = sys.argv[1], int(sys.argv[2])
cfg = load_config()
ctx = zmq.Context.instance()
pcm = (0.2 * np.sin(np.arange(4800) / 3)).astype("<f4").tobytes()
frames = encode(AudioChunk(stream=mode, seq=seq, index=0, last=True, rate_hz=24000, pcm=pcm))
if mode == "plain":
    sock = ctx.socket(zmq.PUSH)
    sock.connect(cfg.endpoints.connect["playback"])
elif mode == "stranger":
    import zmq.auth
    pub, sec = zmq.curve_keypair()
    keys = zmq.auth.load_certificate(str(cfg.endpoints.keys_dir / "server.key"))
    sock = ctx.socket(zmq.PUSH)
    sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = sec, pub, keys[0]
    sock.connect(cfg.endpoints.connect["playback"])
else:
    sock = cfg.endpoints.connect_socket(ctx, "playback")
sock.setsockopt(zmq.LINGER, 3000)
sock.setsockopt(zmq.SNDTIMEO, 10000 if mode == "keyed" else 2000)
try:
    sock.send_multipart(frames)
except zmq.Again:  # a stranger's connection can be refused before the frames are even queued
    if mode == "keyed":
        raise
    print("refused before sending")
sock.close()
"""


def test_loopback_detection() -> None:
    assert is_loopback("tcp://127.0.0.1:1") and is_loopback("tcp://127.9.9.9:1")
    assert is_loopback("tcp://localhost:1") and is_loopback("tcp://[::1]:1") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://10.0.0.2:1") and not is_loopback("tcp://*:1")
    assert not is_loopback("tcp://eth0:1") and not is_loopback("tcp://example.org:1")


def test_keys_are_made_once_and_never_overwritten(tmp_path: Path) -> None:
    k1 = make_keys(tmp_path / "keys")
    k2 = make_keys(tmp_path / "keys")
    assert k1 == k2 == load_keys(tmp_path / "keys")
    assert oct((tmp_path / "keys" / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "keys" / "authorized" / "this-machine.key").exists()


def _config(path: Path, data: Path, keys: Path, playback: str) -> Path:
    ports = free_ports(7)
    names = ["text", "translate", "synthesize", "acks", "control", "tap_in", "tap_out"]
    endpoints = {n: f"tcp://127.0.0.1:{p}" for n, p in zip(names, ports, strict=True)}
    endpoints["playback"] = playback
    path.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(data),
                "endpoints": endpoints,
                "security": {"keys_dir": str(keys)},
                "playback": {"sink": "wav"},
            }
        )
    )
    return path


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TTS_")}
    env.update(STREAM_TTS_CONFIG=str(config), PYTHONUNBUFFERED="1")
    return env


def _played(data: Path) -> list[str]:
    log = data / "played.jsonl"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(why_not is not None, reason=str(why_not))
def test_curve_across_hosts(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with hosts(2) as (server, client):
        addr = f"tcp://{server.addr}:{free_ports(1)[0]}"
        data = tmp_path / "data"
        cfg = _config(tmp_path / "server.toml", data, keys, addr)
        # No keys yet: the node refuses to bind beyond loopback, and says what to do.
        r = server.run([*server.python(), "-m", "stream_tts.cli", "node", "playback"], _env(cfg))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "needs CURVE keys" in r.stderr and "stream-tts keys" in r.stderr
        make_keys(keys)
        node = server.popen(
            [*server.python(), "-m", "stream_tts.cli", "node", "playback"], _env(cfg), tmp_path / "pb.log"
        )
        try:
            time.sleep(2.0)
            assert node.poll() is None, (tmp_path / "pb.log").read_text()
            client_cfg = _config(tmp_path / "client.toml", tmp_path / "cdata", keys, addr)
            # Strangers first: no CURVE at all, then CURVE with a key nobody authorized.
            for mode in ("plain", "stranger"):
                r = client.run([*client.python(), "-c", SENDER, mode, "0"], _env(client_cfg))
                assert r.returncode == 0, r.stderr
            time.sleep(2.0)
            assert _played(data) == [], "a stranger's audio reached playback"
            r = client.run([*client.python(), "-c", SENDER, "keyed", "0"], _env(client_cfg))
            assert r.returncode == 0, r.stderr
            deadline = time.monotonic() + 40
            while not _played(data) and time.monotonic() < deadline:
                time.sleep(0.1)
            played = _played(data)
            assert len(played) == 1 and '"stream": "keyed"' in played[0]
        finally:
            node.terminate()
            node.wait(timeout=10)


def test_keys_cli_authorizes_a_peer_and_refuses_a_missing_key_clearly(tmp_path: Path) -> None:
    import subprocess
    import sys

    import zmq.auth

    zmq.auth.create_certificates(str(tmp_path), "peer")
    cmd = [sys.executable, "-m", "stream_tts.cli", "keys", "--dir", str(tmp_path / "keys")]
    ok = subprocess.run([*cmd, "--authorize", str(tmp_path / "peer.key")], capture_output=True, text=True)
    assert ok.returncode == 0 and "authorized clients 2" in ok.stdout
    bad = subprocess.run([*cmd, "--authorize", str(tmp_path / "nope.key")], capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot read a public key" in bad.stderr and "Traceback" not in bad.stderr
