"""`up` / `status` when something is wrong: they say which node and why, and do not hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bus.node import crash_pause_s
from tests.conftest import REPO, wait_for, write_config

pytestmark = pytest.mark.slow


def _cli(config: Path, data: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", *args, "--config", str(config), "--data-dir", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_names_a_crash_looping_node_and_engines_without_models(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "c.toml",
        data,
        ingest={"max_sentence_chars": "lots"},
        translate={"model": str(tmp_path / "missing.gguf")},
        synthesize={"model_dir": str(tmp_path / "missing-voice")},
    )
    try:
        t0 = time.monotonic()
        up = _cli(config, data, "up", "--timeout", "90")
        took = time.monotonic() - t0
        assert up.returncode == 1, up.stderr
        assert took < 60, f"up took {took:.0f} s to give up"
        err = up.stderr
        assert "ingest is crashing: ValueError" in err and "'lots'" in err
        assert "translate is error" in err and "missing.gguf" in err
        assert "synthesize is error" in err
        assert "playback is" not in err
        # The crash itself is on record in the node's log, with the setting that caused it.
        assert "max_sentence_chars" in (data / "log" / "ingest.log").read_text()
        st = _cli(config, data, "status", timeout=60)
        assert st.returncode == 1
        line = next(ln for ln in st.stdout.splitlines() if ln.startswith("translate "))
        assert "RUNNING" in line and "error" in line and "missing.gguf" in line
        # ... and no busy loop: a crashing node waits longer after each crash in a row (5 s, then
        # 10 s: a loop with no pause, or the same pause each time, never says "exiting in 10 s").
        log_file = data / "log" / "ingest.log"
        assert wait_for(lambda: "exiting in 10 s" in log_file.read_text(), timeout=20, interval=0.2)
        log = log_file.read_text()
        assert 2 <= log.count("setup failed;") <= 3, log.count("setup failed;")
        assert "exiting in 5 s" in log
    finally:
        _cli(config, data, "down", timeout=60)


def test_the_pause_after_a_setup_crash_doubles_up_to_a_minute_and_starts_over(tmp_path: Path) -> None:
    record = tmp_path / "run" / "ingest.setup-crashes"
    pauses = [crash_pause_s(record, 1000.0 + i) for i in range(7)]
    assert pauses == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert crash_pause_s(record, 1006.0 + 3601) == 5.0  # an hour after the last crash: a new loop
    record.write_text("garbage")
    assert crash_pause_s(record, 9999.0) == 5.0


def test_the_repo_root_conf_runs_every_program_from_the_repo_root(tmp_path: Path) -> None:
    """`supervisord -c supervisord.conf` and `supervisorctl -c supervisord.conf status`, run from
    a copy of the repo root (the committed file, its %(here)s paths; private ports by env)."""
    import os
    import shutil

    from bench.ports import free_ports
    from bus.endpoints import LAYOUT

    root = tmp_path / "root"
    (root / "var" / "log").mkdir(parents=True)  # a clone has it (var/log/.gitkeep)
    shutil.copy(REPO / "supervisord.conf", root)
    for name in (".venv", "bus", "nodes", "models"):
        (root / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TTS_")}
    ports = free_ports(len(LAYOUT))
    for name, port in zip(LAYOUT, ports, strict=True):
        env[f"STREAM_TTS_ENDPOINT_{name.upper()}"] = f"tcp://127.0.0.1:{port}"
    bin_dir = REPO / ".venv" / "bin"

    def ctl(*args: str) -> str:
        r = subprocess.run(
            [str(bin_dir / "supervisorctl"), "-c", "supervisord.conf", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return r.stdout

    started = subprocess.run(
        [str(bin_dir / "supervisord"), "-c", "supervisord.conf"], cwd=root, env=env, timeout=60
    )
    assert started.returncode == 0
    try:
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            status = ctl("status")
            lines = [ln.split() for ln in status.splitlines() if ln.strip()]
            if len(lines) == 5 and all(ln[1] == "RUNNING" for ln in lines):
                break
            time.sleep(1)
        names = sorted(ln.split()[0] for ln in status.splitlines() if ln.strip())
        assert names == ["ingest", "playback", "synthesize", "tap", "translate"], status
        assert all(" RUNNING " in ln for ln in status.splitlines() if ln.strip()), status
        assert (root / "var" / "log" / "ingest.log").exists()
        # ... and they serve on the endpoints the environment gave them: ingest takes text.
        from bus.client import Publisher
        from bus.config import load_config

        with Publisher(load_config(None, environ=env), wait_s=30) as pub:
            pub.send("root", "Hello from the repo root.")
        assert (root / "var" / "journal.sqlite3").exists() or wait_for(
            lambda: (root / "var" / "journal.sqlite3").exists(), 10
        )
    finally:
        ctl("shutdown")
