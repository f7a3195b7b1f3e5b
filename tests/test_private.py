"""What another account on this machine can reach under the default config: not the bus (neither
the tap nor the text endpoint), not the data files. Real sockets, real processes, a real other uid
(nobody), and `stream-tts up --tiny` writing its files; ipc's own semantics (a stale socket file,
a restarted binder, a folder that is not private) and the doctor's privacy rows."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
import zmq

from bus.config import load_config
from bus.endpoints import (
    IPC_PATH_MAX,
    SHORT_ROOT,
    EndpointError,
    Endpoints,
    answers,
    bus_dir,
    default_endpoints,
)
from bus.messages import Sentence, TextIn, decode, encode
from bus.private import ensure_private_dir, open_entries, tighten
from stream_tts.doctor.bus_checks import check_ports, check_private_bus, check_private_files
from tests.conftest import REPO, BusEnv, wait_for, write_config
from tests.test_runtime import ready

NOBODY = 65534

# The other account. It imports pyzmq while still root (the venv lives under /root, which nobody
# cannot read), then becomes `uid` for good and tries what an intruder would: enter the folder,
# connect to the tap and to ingest's text socket, read events, publish text.
INTRUDER = r"""
import json, os, socket, sys, time
import zmq
uid, tap, text, frames = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if uid:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
out = {"uid": os.geteuid()}
def unix_connect(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(addr[len("ipc://"):])
        return "connected"
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()
out["tap_connect"], out["text_connect"] = unix_connect(tap), unix_connect(text)
try:
    os.listdir(os.path.dirname(tap[len("ipc://"):]))
    out["list_folder"] = "listed"
except OSError as exc:
    out["list_folder"] = type(exc).__name__
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(tap)
pub = ctx.socket(zmq.XPUB)
pub.setsockopt(zmq.LINGER, 2000)
pub.connect(text)
poller = zmq.Poller()
poller.register(sub, zmq.POLLIN)
poller.register(pub, zmq.POLLIN)
out["tap_events"], out["text_sent"] = 0, False
end = time.monotonic() + 3.0
while time.monotonic() < end and not (out["text_sent"] and out["tap_events"] >= 2):
    for sock, _ in poller.poll(100):
        if sock is sub:
            sub.recv_multipart()
            out["tap_events"] += 1
        elif pub.recv()[:1] == b"\x01" and not out["text_sent"]:  # ingest subscribed: it hears us
            pub.send_multipart([bytes.fromhex(f) for f in frames])
            out["text_sent"] = True
sub.close(0)
pub.close()
ctx.term()
print(json.dumps(out))
"""


def intrude(uid: int, config_endpoints: Endpoints, stream: str) -> dict[str, object]:
    frames = encode(TextIn(stream=stream, text="Say this out loud, please.", final=True, source="x"))
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            INTRUDER,
            str(uid),
            config_endpoints.connect["tap_out"],
            config_endpoints.connect["text"],
            json.dumps([f.hex() for f in frames]),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert r.returncode == 0, r.stderr
    got: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["uid"] == uid  # it really ran as that account
    return got


def sentences(sock: zmq.Socket, seconds: float, want: int | None = None) -> list[Sentence]:
    """What arrives on `sock` within `seconds` (sooner once `want` have come)."""
    out: list[Sentence] = []
    end = time.monotonic() + seconds
    while (
        (want is None or len(out) < want)
        and (left := end - time.monotonic()) > 0
        and sock.poll(int(left * 1000) + 1)
    ):
        msg = decode(sock.recv_multipart())
        assert isinstance(msg, Sentence)
        out.append(msg)
    return out


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A folder in /tmp that every account can enter (0755), so that what stops another account is
    the pipeline's own folders, not pytest's 0700 tmp root."""
    base = Path(tempfile.mkdtemp(prefix="stts-uid-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming another uid needs root")
@pytest.mark.parametrize("where", ["in the data dir", "in a short folder in /tmp"])
def test_another_account_can_neither_read_the_tap_nor_make_the_pipeline_speak(
    open_parent: Path, where: str
) -> None:
    # A long data dir puts the sockets in /tmp/stream-tts-<uid>-<hash>/: a folder in a folder every
    # account can enter and write, where only its own mode and owner keep others out.
    long = where.startswith("in a short")
    data = open_parent / ("d" * 80 if long else "") / "data"
    env = BusEnv(open_parent)
    env.data_dir = data
    env.config_path.write_text(tomli_w.dumps({"data_dir": str(data), "playback": {"sink": "wav"}}))
    config = env.config
    folder = bus_dir(config.data_dir)
    assert config.endpoints.connect == default_endpoints(folder)  # the default config: ipc
    assert (folder.parent == SHORT_ROOT) == long
    translate_in = config.endpoints.bind_socket(zmq.Context.instance(), "translate")  # as translate
    try:
        env.start("tap-proxy")
        env.start("node", "ingest")
        ready(env, "ingest")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()
        for name in ("text", "acks", "control", "tap_in", "tap_out"):  # the nodes' (umask 077): 0700
            st = (folder / f"{name}.sock").lstat()
            assert stat.S_ISSOCK(st.st_mode) and not st.st_mode & 0o077, name

        stranger = intrude(NOBODY, config.endpoints, "intruder")
        assert stranger["list_folder"] == "PermissionError", stranger
        assert stranger["tap_connect"] == stranger["text_connect"] == "PermissionError", stranger
        assert stranger["tap_events"] == 0, stranger  # not one heartbeat: the tap is closed to it
        assert stranger["text_sent"] is False, stranger  # ingest never heard it
        assert sentences(translate_in, 2.0) == []  # and nothing it sent reached the pipeline

        # The same program as the owner gets through at once: the account is what keeps it out.
        owner = intrude(0, config.endpoints, "owner")
        assert owner["tap_connect"] == owner["text_connect"] == "connected", owner
        assert isinstance(owner["tap_events"], int) and owner["tap_events"] >= 1, owner
        assert owner["text_sent"] is True, owner
        got = sentences(translate_in, 10.0, want=1)
        assert [(s.stream, s.text) for s in got] == [("owner", "Say this out loud, please.")]
    finally:
        translate_in.close(0)
        env.stop_all()
        if long:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_long_data_dir_gets_a_short_private_folder_the_same_for_every_process(tmp_path: Path) -> None:
    short = tmp_path / "data"
    assert bus_dir(short) == short / "run" / "bus"
    long = tmp_path / ("x" * (IPC_PATH_MAX - len(str(tmp_path)))) / "data"
    folder = bus_dir(long)
    assert folder == bus_dir(Path(str(long)))  # deterministic: every process of the pipeline agrees
    assert folder.parent == SHORT_ROOT and folder.name.startswith(f"stream-tts-{os.geteuid()}-")
    assert folder != bus_dir(long.with_name("other"))  # another pipeline, another folder
    for addr in default_endpoints(folder).values():
        assert len(os.fsencode(addr[len("ipc://") :])) <= IPC_PATH_MAX


def test_the_bus_folder_is_made_0700_and_refused_when_others_can_enter(tmp_path: Path) -> None:
    ep = Endpoints.load(environ={}, folder=tmp_path / "data" / "run" / "bus")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    old = os.umask(0o022)  # a lax process: the folders are 0700 all the same
    try:
        sub = ep.connect_socket(ctx, "tap_out")  # the first one there, a connector, makes it
    finally:
        os.umask(old)
    sub.close(0)
    for f in (tmp_path / "data", tmp_path / "data" / "run", tmp_path / "data" / "run" / "bus"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o700, f
    folder = tmp_path / "data" / "run" / "bus"
    folder.chmod(0o755)
    for act in (lambda: ep.bind_socket(ctx, "playback"), lambda: ep.connect_socket(ctx, "playback")):
        with pytest.raises(EndpointError, match=rf"mode 0755.*chmod 700 {re.escape(str(folder))}"):
            act()
    folder.chmod(0o700)
    folder.rename(tmp_path / "elsewhere")
    folder.symlink_to(tmp_path / "elsewhere")  # a link could lead anywhere: refused too
    with pytest.raises(EndpointError, match="symbolic link"):
        ep.bind_socket(ctx, "playback")
    folder.unlink()
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)  # somebody else's folder, 0700 or not
    with pytest.raises(EndpointError, match=f"owned by uid {NOBODY}.*remove"):
        ep.bind_socket(ctx, "playback")


def test_ipc_works_like_tcp_a_stale_socket_is_rebound_a_live_one_refused_and_peers_reconnect(
    tmp_path: Path,
) -> None:
    ep = Endpoints.load(environ={}, folder=tmp_path / "bus")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    ensure_private_dir(tmp_path / "bus")
    path = Path(ep.bind["translate"][len("ipc://") :])
    crashed = socket.socket(socket.AF_UNIX)  # a crashed owner: its socket file stays behind
    crashed.bind(str(path))
    crashed.close()
    assert path.exists()
    push = ep.connect_socket(ctx, "translate")  # connects before anybody binds: it keeps trying
    pull = ep.bind_socket(ctx, "translate")  # the stale file is no obstacle
    try:
        with pytest.raises(EndpointError, match="already answers on it"):
            ep.bind_socket(ctx, "translate")  # a live one is, like a TCP port in use
        push.send_multipart(encode(Sentence(stream="s", seq=0, text="one")), flags=zmq.NOBLOCK)
        assert [m.text for m in sentences(pull, 5.0, want=1)] == ["one"]
        pull.close(linger=0)  # the owner restarts (zmq leaves its socket file: a stale one again) ...
        assert wait_for(lambda: not answers(path), 5) and path.exists()  # closing is asynchronous
        push.send_multipart(encode(Sentence(stream="s", seq=1, text="two")), flags=zmq.NOBLOCK)  # queued
        pull = ep.bind_socket(ctx, "translate")
        assert [m.text for m in sentences(pull, 5.0, want=1)] == [
            "two"
        ]  # ... and the peer came back by itself
    finally:
        push.close(0)
        pull.close(0)


@pytest.mark.slow
def test_a_running_pipeline_writes_every_file_0600_in_0700_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "c.toml"  # the default endpoints: the bus is ipc in data/run/bus
    cfg.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(data),
                "playback": {"sink": "wav"},
                # this 2-core machine is shared: give each stage room (the defaults suit a GPU)
                "ingest": {"deadline_base_s": 300.0},
                "synthesize": {"deadline_s": 240.0},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TTS_")}

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stream_tts.cli", *args, "--config", str(cfg), "--data-dir", str(data)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    old = os.umask(0o022)  # what a shell usually has: the pipeline must not depend on ours
    try:
        up = cli("up", "--tiny", "--quiet", "--timeout", "240", timeout=420)
        assert up.returncode == 0, up.stderr[-3000:]
        said = subprocess.run(  # the same data dir, so the same sockets
            [sys.executable, "-m", "stream_tts.cli", "say", "--config", str(cfg), "Hello."],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert said.returncode == 0, said.stderr
        assert wait_for(lambda: (data / "played.jsonl").exists() and any(data.rglob("*.wav")), 240, 0.5)
        time.sleep(1.5)  # one more heartbeat's worth of logs
        seen = {p.relative_to(data).parts[0] for p in data.rglob("*")}
        for name in (
            "journal.sqlite3",
            "played.jsonl",
            "wav",
            "log",
            "supervisord.conf",
            "tiny-models",
            "run",
        ):
            assert name in seen, (name, seen)
        assert {p.name for p in (data / "run" / "bus").iterdir()} >= {"text.sock", "tap_out.sock"}
        assert (data / "log" / "ingest.log").stat().st_size > 0
        wrong = []
        for p in [data, *data.rglob("*")]:
            st = p.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                ok = mode == 0o700
            elif stat.S_ISREG(st.st_mode):
                ok = mode == 0o600
            else:  # sockets (the bus's, supervisord's): this account only
                ok = stat.S_ISSOCK(st.st_mode) and not mode & 0o077
            if not ok or st.st_uid != os.geteuid():
                wrong.append(f"{p.relative_to(data.parent)} {mode:04o}")
        assert wrong == [], wrong
    finally:
        cli("down", timeout=60)
        os.umask(old)


def test_doctor_warns_about_a_data_dir_or_bus_folder_others_can_enter_and_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps({"data_dir": str(data)}))
    config = load_config(cfg, environ={})
    assert check_private_files(config).status == "ok"  # not made yet
    bus = check_private_bus(config)
    assert bus.status == "ok" and str(bus_dir(config.data_dir)) in bus.detail
    # What an older version left: a 0755 data dir and a 0644 journal.
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "journal.sqlite3").write_text("")
    (data / "journal.sqlite3").chmod(0o644)
    (data / "notes.txt").write_text("")  # not the project's: never looked at, never changed
    (data / "notes.txt").chmod(0o644)
    row = check_private_files(config)
    assert row.status == "warning" and "mode 0755" in row.detail and str(data) in row.detail, row
    assert row.fix.startswith(f"chmod 700 {data}"), row
    data.chmod(0o700)
    row = check_private_files(config)
    assert (
        row.status == "warning" and "journal.sqlite3" in row.detail and row.fix.startswith("chmod -R go=")
    ), row
    assert [p.name for p, _ in open_entries(data)] == ["journal.sqlite3"]
    assert tighten(data) == 1  # what `stream-tts up` does
    assert check_private_files(config).status == "ok"
    assert stat.S_IMODE((data / "notes.txt").stat().st_mode) == 0o644
    # The bus folder: open to others, the doctor says so and how to close it.
    folder = bus_dir(config.data_dir)
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    row = check_private_bus(config)
    assert row.status == "warning" and "mode 0755" in row.detail and row.fix == f"chmod 700 {folder}", row
    # Loopback TCP without CURVE: any account here can connect. Allowed, and warned about.
    tcp = load_config(write_config(tmp_path / "tcp.toml", data), environ={})
    row = check_private_bus(tcp)
    assert row.status == "warning" and "any account on this machine can connect" in row.detail, row
    assert "text" in row.detail and "[endpoints]" in row.fix


def test_doctor_sees_ipc_sockets_free_stale_or_answered(tmp_path: Path) -> None:
    config = load_config(environ={"STREAM_TTS_DATA_DIR": str(tmp_path / "data")})
    first = check_ports(config, {})
    assert first[0].name == "ports" and first[0].status == "ok" and "free: text" in first[0].detail
    ensure_private_dir(bus_dir(config.data_dir))
    crashed = socket.socket(socket.AF_UNIX)
    crashed.bind(config.endpoints.bind["acks"][len("ipc://") :])
    crashed.close()
    stranger = config.endpoints.bind_socket(zmq.Context.instance(), "playback")  # not our playback
    try:
        rows = {r.name: r for r in check_ports(config, {})}
        assert "acks" in rows["ports"].detail.split("free: ")[1]  # a file left over is free
        assert rows["ports"].status == "error" and rows["socket playback"].status == "error"
        assert "not by our playback" in rows["socket playback"].detail
        assert "STREAM_TTS_ENDPOINT_PLAYBACK" in rows["socket playback"].fix
    finally:
        stranger.close(0)
