"""A full disk: the data directory on a small tmpfs made here, filled up. Ingest refuses new text
with a message the producer prints ("no space left in <data dir>") instead of crash-looping,
keeps what it had journaled, and takes text again once space is back; `stream-tts status` says
so. Skipped, saying why, where this machine does not let a test mount a tmpfs."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from bus.journal import Journal
from bus.messages import Sentence, decode
from tests.conftest import BusEnv, stream_tts, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip() or r.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem of `folder` to the last byte."""
    for name, block in (("filler", 65536), ("filler2", 512), ("filler3", 1)):
        try:
            with (folder / name).open("wb", buffering=0) as f:
                while f.write(b"\0" * block):
                    pass
        except OSError:
            pass
    return folder / "filler"


def test_a_full_disk_refuses_text_with_a_message_keeps_the_journal_and_recovers(
    small_disk: Path, tmp_path: Path
) -> None:
    data = small_disk / "data"
    env = BusEnv(tmp_path)
    env.data_dir = data
    env.config_path = write_config(tmp_path / "config.toml", data)
    translate_in = env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    try:
        ingest = env.start("node", "ingest")
        said = stream_tts(
            "say", "--config", str(env.config_path), "--stream", "d", "Kept before the disk filled."
        )
        assert said.returncode == 0, said.stderr
        assert translate_in.poll(10_000)
        first = decode(translate_in.recv_multipart())
        assert isinstance(first, Sentence) and first.text == "Kept before the disk filled."
        fill(small_disk)
        refused = [
            stream_tts("say", "--config", str(env.config_path), "--stream", "d", f"Refused number {n}.")
            for n in (1, 2, 3)
        ]
        for r in refused:
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert f"no space left in {data}" in r.stderr, r.stderr
        assert ingest.poll() is None, env.log("node-ingest")  # still running, never restarted
        status = stream_tts("status", "--config", str(env.config_path), "--data-dir", str(data))
        assert f"no space left in {data}" in status.stderr, (status.stdout, status.stderr)
        for f in small_disk.glob("filler*"):
            f.unlink()
        time.sleep(0.5)
        ok = stream_tts("say", "--config", str(env.config_path), "--stream", "d", "Taken once space is back.")
        assert ok.returncode == 0, ok.stderr
        got = []
        while translate_in.poll(3000):
            m = decode(translate_in.recv_multipart())
            if isinstance(m, Sentence):
                got.append(m.text)
        assert "Taken once space is back." in got and not any("Refused" in t for t in got)
        texts = [e.text for e in Journal(data / "journal.sqlite3").open_entries("d")]
        assert texts == ["Kept before the disk filled.", "Taken once space is back."]
        assert ingest.poll() is None
    finally:
        env.stop_all()
        translate_in.close(0)
        os.sync()
