"""Chaos under real supervisord on the tiny models: 500 sentences from 3 streams while about 100
random nodes (ingest and playback included) are killed -9; played.jsonl must hold every accepted
sentence exactly once, in seq order per stream (bench/chaos.py drives it and prints the table).

What counts: a sentence is *accepted* once ingest has journaled it (<data_dir>/journal.sqlite3;
ingest's `finished` tap event marks the same moment). Text can die on the way in: PUB/SUB has no
ack, a PUB with no subscriber (ingest restarting) drops what it is given, and a TextIn in a killed
ingest's socket dies with it. So each producer waits for its sentence to be journaled and re-sends
it when it is not, once a new ingest has been serving long enough after a kill (the driver's
docstring has the exact rule). Nothing identifies a TextIn to ingest, so a re-sent one could
rarely be journaled twice; each journal row is then a sentence of its own that must play once
(the driver reports `accepted_twice`). Every journal row of the test's streams is counted.

Config for a 2-core CI box: short sentences (a tag in letters, not digits: translate would keep
digits and the frontend read them out in full), one Japanese token per sentence, one-hop synthesis
of at most one speech token per text token (the pipeline is under test, not the noise), two
sentences in flight per stream (more only queue in synthesize and outlive their deadlines), WAV
sink; deadlines measured (nodes/ingest/deadlines.py) but capped at 5 s so a sentence lost in a crash
comes back soon; max_attempts 20 because with a kill every 0.7 s a sentence may well be lost
many times in a row (synthesize alone is down ~6 s per kill); playback waits up to 40 s for a
missing seq (longer than any retry path here), so order is kept rather than skipped. The kills
come every 0.7 s to any node that is serving (bench/chaos.py): at 1 s the last kill came at
121.6 s and the run took 167.7 s, at 0.7 s 107.8 and 148.6 s, the same 100 kills.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.chaos import run_chaos, table
from bus.config import load_config
from tests.conftest import stream_tts, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SENTENCES, STREAMS, KILLS = 500, 3, 100


_cli = stream_tts


def test_every_accepted_sentence_plays_once_in_order_through_100_kills(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-models").symlink_to(tiny_models[0].parent)  # `up --tiny` finds them built
    cfg = write_config(
        tmp_path / "config.toml",
        data,
        ingest={
            "deadline_base_s": 3.0,
            "deadline_per_char_s": 0.1,
            "deadline_margin": 2.0,
            "deadline_quantile": 0.75,
            "deadline_min_s": 2.0,
            "deadline_max_s": 5.0,
            "max_attempts": 20,
        },
        translate={"max_tokens": 1},
        synthesize={
            "first_hop_tokens": 25,
            "hop_tokens": 25,
            "threads": 1,
            "min_token_text_ratio": 0.5,
            "max_token_text_ratio": 1.0,
        },
        playback={"sink": "wav", "gap_wait_s": 40.0},
    )
    where = ("--config", str(cfg), "--data-dir", str(data))
    up = _cli("up", "--tiny", "--quiet", *where)
    assert up.returncode == 0, up.stderr
    try:
        res = run_chaos(
            load_config(cfg, environ={}),
            sentences=SENTENCES,
            streams=STREAMS,
            kills=KILLS,
            kill_interval_s=0.7,
            window=2,
            min_up_s=3.0,
            timeout_s=420,
        )
    finally:
        _cli("down", *where, timeout=60)
    (data / "chaos.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print("\n" + table(res))
    assert not res["timed_out"], res
    assert res["kills"] >= 0.95 * KILLS and all(res["kills_per_node"].values()), res["kills_per_node"]
    assert res["accepted"] == SENTENCES + res["accepted_twice"] and res["never_accepted"] == 0, res
    assert (res["lost"], res["duplicated"], res["out_of_order"]) == (0, 0, 0), res
    assert res["unknown"] == res["wrong_text"] == res["torn_lines"] == 0, res
    assert res["journal_states"] == {"played": res["accepted"]}, res["journal_states"]
