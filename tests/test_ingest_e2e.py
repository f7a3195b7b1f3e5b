"""The pipe and the hook end to end: real `stream-tts pipe` / `stream-tts hook` processes publishing
into a real ingest node over real sockets; the test binds translate's PULL and reads the Sentences.
What arrives must be exactly what `stream-tts segment` prints for the same input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import zmq

from bus.client import Publisher
from bus.messages import Sentence, decode
from tests.conftest import REPO, BusEnv, wait_for

DATA = Path(__file__).parent / "data" / "ingest"


def start_ingest(env: BusEnv) -> zmq.Socket:
    """translate's PULL (bound here, as translate would), ingest running and listening."""
    sock = env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    env.start("node", "ingest")
    with Publisher(env.config, wait_s=15):  # returns once ingest's SUB is there
        pass
    return sock


def sentences(sock: zmq.Socket, n: int, timeout_s: float = 15.0) -> list[Sentence]:
    got: list[Sentence] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        msg = decode(sock.recv_multipart())
        assert isinstance(msg, Sentence)
        got.append(msg)
    return got


def nothing_more(sock: zmq.Socket, wait_s: float) -> bool:
    return not sock.poll(int(wait_s * 1000))


def cli(env: BusEnv, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bus.cli", *args],
        input=stdin,
        env=env.env(),
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )


def segment(env: BusEnv, fmt: str, path: Path) -> list[str]:
    proc = cli(env, "segment", "--format", fmt, "--streams", str(path))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().splitlines()


def test_pipe_with_partial_messages_speaks_what_segment_prints(bus_env: BusEnv) -> None:
    sock = start_ingest(bus_env)
    path = DATA / "partial.jsonl"
    want = segment(bus_env, "stream-json", path)
    assert [w.split("\t", 1)[1] for w in want] == (DATA / "partial.expected.txt").read_text().splitlines()
    # the pipe reads the bytes in small pieces, as from a real pipe, and tees them through
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus.cli", "pipe", "--tee", "--stats"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=bus_env.env(),
        cwd=REPO,
    )
    data = path.read_bytes()
    assert proc.stdin is not None
    for i in range(0, len(data), 997):
        proc.stdin.write(data[i : i + 997])
        proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == data
    got = sentences(sock, len(want))
    assert [f"{s.stream}\t{s.text}" for s in got] == want
    assert [s.seq for s in got] == list(range(got[0].seq, got[0].seq + len(want)))
    assert nothing_more(sock, 1.0)
    stats = json.loads(err.decode().strip().splitlines()[-1])
    assert stats["lost"] == 0 and stats["text_blocks_already_streamed"] == 4


def test_pipe_skips_bad_lines_reports_them_and_exits_0(bus_env: BusEnv) -> None:
    sock = start_ingest(bus_env)
    big = (
        b'{"type": "assistant", "message": {"id": "m", "content": []}, "pad": "' + b"x" * (10 << 20) + b'"}\n'
    )
    data = big + (DATA / "bad.jsonl").read_bytes()
    proc = cli(bus_env, "pipe", stdin=data)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "8 bad lines skipped" in err and "oversize 1" in err and "bad_utf8 1" in err
    got = sentences(sock, 3)
    assert [s.text for s in got] == (DATA / "bad.expected.txt").read_text().splitlines()


def test_pipe_with_no_ingest_says_so_and_exits_1(bus_env: BusEnv) -> None:
    t0 = time.monotonic()
    proc = cli(bus_env, "pipe", stdin=(DATA / "plain.jsonl").read_bytes())
    assert proc.returncode == 1
    assert b"no ingest is listening" in proc.stderr
    assert time.monotonic() - t0 < 10


def test_hook_publishes_once_per_text_and_session(bus_env: BusEnv, tmp_path: Path) -> None:
    sock = start_ingest(bus_env)
    stop = DATA / "hook-stop.json"
    want = segment(bus_env, "hook", stop)
    assert cli(bus_env, "hook", stdin=stop.read_bytes()).returncode == 0
    got = sentences(sock, len(want))
    assert [f"{s.stream}\t{s.text}" for s in got] == want
    # Stop fires again for the same turn: nothing is said twice
    assert cli(bus_env, "hook", stdin=stop.read_bytes()).returncode == 0
    assert nothing_more(sock, 1.5)
    # an old CLI: the answer comes from the transcript
    old = tmp_path / "old.json"
    old.write_text((DATA / "hook-stop-old.json").read_text().replace("TRANSCRIPT_DIR", str(DATA)))
    want_old = segment(bus_env, "hook", old)
    assert cli(bus_env, "hook", stdin=old.read_bytes()).returncode == 0
    assert [f"{s.stream}\t{s.text}" for s in sentences(sock, len(want_old))] == want_old
    log = bus_env.data_dir / "log" / "hook.log"
    assert wait_for(lambda: log.exists() and log.read_text().count("published") == 2, 10)
    assert "already spoken" in log.read_text()
