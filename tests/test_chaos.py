"""Exactly once at an agent's pace, under real supervisord on the tiny models.

An agent writes a 20-sentence answer in a few seconds; speaking it takes a minute. So the producers
here write in bursts: every sentence of an answer is accepted (journaled by ingest) before the first
of it is played, several streams at once, and random programs, the tap proxy included, are killed
-9 meanwhile, some in a burst's first second (bench/chaos.py drives it and prints the table). What
must hold: played.jsonl has every accepted sentence exactly once, in seq order per stream, and the
journal says `played` for each (a `failed` nobody asked for is a lost sentence).

How the pipeline keeps it (nodes/ingest/node.py): a restarted stage announces itself (a new pid on
the tap) and ingest re-sends every open sentence at once, with a `Resent` that makes older attempts
stale everywhere; a stream's next sentence is re-sent past its deadline; playback waits for a
missing seq until ingest gives it up (never here), not on a timer of its own. max_attempts stays at
its default (3): restarts do not use up a sentence's retry budget.

Config for a 2-core CI box: short sentences (a tag in letters, not digits: translate would keep
digits and the frontend read them out in full), one Japanese token per sentence, one-hop synthesis
of at most one speech token per text token (the pipeline is under test, not the noise), WAV sink;
deadlines measured (nodes/ingest/deadlines.py) but capped at 5 s.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bench.chaos import _supervisor, run_chaos, table
from bus import topology
from bus.client import Publisher
from bus.config import load_config
from bus.journal import Journal
from tests.conftest import stream_tts, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STREAMS, BURST, BURSTS, KILLS = 3, 20, 2, 40
FAST = {
    "ingest": {
        "deadline_base_s": 3.0,
        "deadline_per_char_s": 0.1,
        "deadline_margin": 2.0,
        "deadline_quantile": 0.75,
        "deadline_min_s": 2.0,
        "deadline_max_s": 5.0,
    },
    "translate": {"max_tokens": 1},
    "synthesize": {
        "first_hop_tokens": 25,
        "hop_tokens": 25,
        "threads": 1,
        "min_token_text_ratio": 0.5,
        "max_token_text_ratio": 1.0,
    },
}


def pipeline(tmp_path: Path, tiny_models: tuple[Path, Path]) -> tuple[Path, tuple[str, ...]]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-models").symlink_to(tiny_models[0].parent)  # `up --tiny` finds them built
    cfg = write_config(tmp_path / "config.toml", data, **FAST)  # type: ignore[arg-type]
    where = ("--config", str(cfg), "--data-dir", str(data))
    up = stream_tts("up", "--tiny", "--quiet", *where)
    assert up.returncode == 0, up.stderr
    return cfg, where


def test_bursts_of_answers_play_once_in_order_through_kills_of_every_program(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    cfg, where = pipeline(tmp_path, tiny_models)
    try:
        res = run_chaos(
            load_config(cfg, environ={}),
            sentences=STREAMS * BURST * BURSTS,
            streams=STREAMS,
            kills=KILLS,
            kill_interval_s=1.5,
            burst=BURST,
            min_up_s=3.0,
            timeout_s=400,
        )
    finally:
        stream_tts("down", *where, timeout=60)
    data = load_config(cfg, environ={}).data_dir
    (data / "chaos.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print("\n" + table(res))
    assert not res["timed_out"], res
    assert res["kills"] >= 0.9 * KILLS and all(res["kills_per_node"].values()), res["kills_per_node"]
    assert res["kills_at_burst_start"] >= 1, res["kill_log"]
    assert res["accepted"] == res["sent_by_producers"] + res["accepted_twice"] and res["never_accepted"] == 0
    assert (res["lost"], res["duplicated"], res["out_of_order"]) == (0, 0, 0), res
    assert res["unknown"] == res["wrong_text"] == res["torn_lines"] == 0, res
    assert res["journal_states"] == {"played": res["accepted"]}, res["journal_states"]


def played(data: Path, stream: str) -> list[dict[str, Any]]:
    path = data / "played.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["stream"] == stream]


def test_a_program_killed_mid_burst_loses_nothing_and_the_silence_is_short(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    """Each program in turn (synthesize first) is killed -9 while an answer of 12 sentences is
    being spoken: every sentence of it plays once, in order; the silence from the kill to the next
    sentence is reported per program (the restart of synthesize, which loads its model, is most)."""
    cfg, where = pipeline(tmp_path, tiny_models)
    config = load_config(cfg, environ={})
    rpc = _supervisor(config.data_dir)
    silence: dict[str, float] = {}
    try:
        for victim in ("synthesize", "translate", "playback", "ingest", topology.TAP.name):
            stream = f"kill-{victim}"
            with Publisher(config, wait_s=10) as pub:  # an agent's answer, written at once
                for i in range(12):
                    pub.send(stream, f"Answer {stream} line {'abcdefghijkl'[i]} is here.", source="test")
            assert wait_for(lambda: len(played(config.data_dir, stream)) >= 2, 60), victim  # noqa: B023
            pid = int(rpc.supervisor.getProcessInfo(victim)["pid"])
            killed_ns = time.time_ns()
            os.kill(pid, signal.SIGKILL)
            assert wait_for(lambda: len(played(config.data_dir, stream)) >= 12, 120), (  # noqa: B023
                victim,
                played(config.data_dir, stream),
            )
            records = played(config.data_dir, stream)
            assert [r["seq"] for r in records] == list(range(12)), (victim, [r["seq"] for r in records])
            after = [r["first_sample_wall_ns"] for r in records if r["first_sample_wall_ns"] >= killed_ns]
            silence[victim] = round((min(after) - killed_ns) / 1e9, 2) if after else 0.0
            assert wait_for(lambda: rpc.supervisor.getProcessInfo(victim)["statename"] == "RUNNING", 30)  # noqa: B023
            time.sleep(1.5)  # serving again (a heartbeat) before the next one is killed
    finally:
        stream_tts("down", *where, timeout=60)
    counts = Journal(config.data_dir / "journal.sqlite3").counts()
    assert counts == {"played": 5 * 12}, counts
    print(f"\nsilence from a kill to the next sentence played (s): {silence}; worst {max(silence.values())}")
