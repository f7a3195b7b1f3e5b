"""`up` / `status` when something is wrong: they say which node and why, and do not hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write_config

pytestmark = pytest.mark.slow


def _cli(config: Path, data: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus.cli", *args, "--config", str(config), "--data-dir", str(data)],
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
        # ... and no busy loop: a crashing node is restarted every few seconds at most.
        time.sleep(12)
        log = (data / "log" / "ingest.log").read_text()
        assert 2 <= log.count("setup failed") <= 4, log.count("setup failed")
    finally:
        _cli(config, data, "down", timeout=60)
