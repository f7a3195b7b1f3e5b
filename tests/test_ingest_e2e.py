"""The pipe and the hook end to end: real `stream-tts pipe` / `stream-tts hook` processes publishing
into a real ingest node over real sockets; the test binds translate's PULL and reads the Sentences.
What arrives must be exactly what `stream-tts segment` prints for the same input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import zmq

from bus.client import Publisher
from bus.messages import ControlMessage, Flush, Message, Sentence, decode
from bus.tap import events, subscribe
from stream_tts.claude.stream_json import BAD_KINDS
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


def control_sub(env: BusEnv) -> zmq.Socket:
    """A SUB on ingest's control PUB, as every stage has; returned once a probe Flush came through."""
    sock = env.config.endpoints.connect_socket(zmq.Context.instance(), "control")
    with Publisher(env.config, wait_s=15) as pub:
        for _ in range(150):
            pub.control(Flush(stream="probe"))
            if sock.poll(100):
                break
    while sock.poll(300):  # the probes still on their way
        sock.recv_multipart()
    return sock


def controls(sock: zmq.Socket, quiet_s: float = 1.0) -> list[ControlMessage]:
    """Control messages until none comes for `quiet_s`."""
    got = []
    while sock.poll(int(quiet_s * 1000)):
        msg = decode(sock.recv_multipart())
        assert isinstance(msg, ControlMessage)
        got.append(msg)
    return got


def control_ids(msgs: list[ControlMessage]) -> list[tuple[str, str]]:
    return [(m.TYPE, str(getattr(m, "stream", ""))) for m in msgs]


def hook_log(env: BusEnv) -> str:
    log = env.data_dir / "log" / "hook.log"
    return log.read_text() if log.exists() else "(no hook.log)"


def ingest_sent_ns(msg: Message) -> int:
    return {st.stage: st.sent_wall_ns for st in msg.stamps}["ingest"]  # type: ignore[attr-defined]


def cli(env: BusEnv, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", *args],
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
        [sys.executable, "-m", "stream_tts.cli", "pipe", "--tee", "--stats"],
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


def test_pipe_reports_every_bad_line_on_the_tap(bus_env: BusEnv) -> None:
    """The first bad line is the one a PUB that sends at once loses: it goes before the tap's
    subscription has reached the pipe's fresh connection."""
    bus_env.start("tap-proxy")
    sock = start_ingest(bus_env)
    tap = subscribe(bus_env.config)
    assert any(ev.node == "ingest" for ev in events(tap, 15)), "the tap shows nothing"  # joined
    big = b'{"type": "assistant", "pad": "' + b"x" * (10 << 20) + b'"}\n'
    proc = cli(bus_env, "pipe", stdin=big + (DATA / "bad.jsonl").read_bytes())
    assert proc.returncode == 0, proc.stderr
    seen = [ev for ev in events(tap, 2.0) if ev.node == "pipe"]
    dropped = [ev.detail["reason"] for ev in seen if ev.kind == "dropped"]
    stats = [ev.detail for ev in seen if ev.kind == "pipe_stats"]
    want = {k: v for k, v in json.loads((DATA / "bad.stats.json").read_text()).items() if k in BAD_KINDS}
    want["oversize"] += 1
    assert Counter(reason.split(": ")[1] for reason in dropped) == {k: n for k, n in want.items() if n}
    assert dropped[0].startswith("line 1: oversize")  # the very first event is there too
    assert len(stats) == 1 and {k: stats[0][k] for k in want} == want
    assert stats[0]["lost"] == 0 and [s.text for s in sentences(sock, 3)] == (
        (DATA / "bad.expected.txt").read_text().splitlines()
    )
    tap.close(0)


def test_pipe_without_a_tap_is_not_held_up_by_it(bus_env: BusEnv) -> None:
    start_ingest(bus_env)
    t0 = time.monotonic()
    proc = cli(bus_env, "pipe", stdin=(DATA / "bad.jsonl").read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert b"7 bad lines skipped" in proc.stderr
    assert time.monotonic() - t0 < 10


def test_a_repeated_notification_is_spoken_each_time(bus_env: BusEnv) -> None:
    """Claude asks for permission again: the same words are news again (only Stop is de-duplicated)."""
    sock = start_ingest(bus_env)
    note = DATA / "hook-notification.json"
    want = segment(bus_env, "hook", note)
    assert [w.split("\t", 1)[1] for w in want] == (
        DATA / "hook-notification.expected.txt"
    ).read_text().splitlines()
    for _ in range(2):
        assert cli(bus_env, "hook", stdin=note.read_bytes()).returncode == 0
        assert [f"{s.stream}\t{s.text}" for s in sentences(sock, len(want))] == want
    assert nothing_more(sock, 1.0)


def test_hook_flushes_the_session_after_its_text(bus_env: BusEnv) -> None:
    sock = start_ingest(bus_env)
    control = control_sub(bus_env)
    stop = DATA / "hook-stop.json"
    session = json.loads(stop.read_text())["session_id"]
    assert cli(bus_env, "hook", stdin=stop.read_bytes()).returncode == 0
    want = segment(bus_env, "hook", stop)
    got = sentences(sock, len(want))
    assert len(got) == len(want), hook_log(bus_env)
    sent = controls(control)
    assert control_ids(sent) == [("cancel", session), ("flush", session)]
    assert ingest_sent_ns(sent[1]) > ingest_sent_ns(got[-1])  # after the text, not before
    control.close(0)


def test_old_cli_subagent_and_session_each_speak_from_their_own_transcript(
    bus_env: BusEnv, tmp_path: Path
) -> None:
    """A SubagentStop reads the sub-agent's own (all side chain) transcript; what it read does not
    stand in for the session's, so the next Stop still waits for its lagging transcript."""
    sock = start_ingest(bus_env)
    for name in ("transcript-old.jsonl", "transcript-subagent.jsonl"):
        shutil.copy(DATA / name, tmp_path / name)

    def hook(name: str) -> list[str]:
        payload = tmp_path / name
        payload.write_text((DATA / name).read_text().replace("TRANSCRIPT_DIR", str(tmp_path)))
        want = segment(bus_env, "hook", payload)
        assert cli(bus_env, "hook", stdin=payload.read_bytes()).returncode == 0
        assert [f"{s.stream}\t{s.text}" for s in sentences(sock, len(want))] == want, hook_log(bus_env)
        return [w.split("\t", 1)[1] for w in want]

    assert hook("hook-stop-old.json") == (DATA / "hook-stop-old.expected.txt").read_text().splitlines()
    assert hook("hook-subagentstop-old.json") == (
        (DATA / "hook-subagentstop-old.expected.txt").read_text().splitlines()
    )
    # the next Stop fires before its answer reaches the session's transcript
    payload = (tmp_path / "hook-stop-old.json").read_bytes()
    assert cli(bus_env, "hook", stdin=payload).returncode == 0
    time.sleep(0.8)  # the hook's child reads the old answer meanwhile (it waits up to 1.5 s)
    answer = {
        "type": "assistant",
        "isSidechain": False,
        "uuid": "t-0011",
        "message": {
            "id": "msg_T3",
            "role": "assistant",
            "content": [{"type": "text", "text": "The PR is open."}],
        },
    }
    prompt = {
        "type": "user",
        "isSidechain": False,
        "uuid": "t-0010",
        "message": {"role": "user", "content": "Yes."},
    }
    with (tmp_path / "transcript-old.jsonl").open("a") as f:
        f.write(json.dumps(prompt) + "\n" + json.dumps(answer) + "\n")
    assert [s.text for s in sentences(sock, 1)] == ["The PR is open."], hook_log(bus_env)
