"""The player's rules on its own (no device): render() is driven block by block as a device would."""

from __future__ import annotations

import time

import numpy as np

from nodes.playback.player import Done, Player, PlayerSettings, Started, Starved, edge_fades

RATE = 8000
BLOCK = 80  # 10 ms


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t + 0.5)).astype(np.float32)


def player(**kw: object) -> Player:
    settings = {"rate_hz": RATE, "preroll_ms": 0.0, "jitter_ms": 50.0, "fade_ms": 2.0, **kw}
    return Player(PlayerSettings(**settings))  # type: ignore[arg-type]


def run(p: Player, seconds: float) -> np.ndarray:
    out = [p.render(BLOCK, time.time_ns()) for _ in range(int(seconds * RATE / BLOCK))]
    return np.concatenate(out)


def order(p: Player) -> list[tuple[str, int]]:
    return [(e.key[0], e.key[1]) for e in p.events() if isinstance(e, Done)]


def test_a_sentence_waits_for_its_jitter_buffer_then_plays_whole() -> None:
    p = player(jitter_ms=100.0)
    x = tone(0.3, 440)
    p.add(("s", 0, 0), x[:400], 0, False, 0)  # 50 ms: less than the jitter buffer
    assert not run(p, 0.1).any()
    p.add(("s", 0, 0), x[400:], 1, True, 0)
    out = run(p, 0.5)
    start = int(np.nonzero(out)[0][0])
    assert np.array_equal(out[start : start + x.size], edge_fades(x, round(0.002 * RATE)))
    assert order(p) == [("s", 0)]


def test_a_dry_buffer_mid_sentence_is_counted_once_and_refills_before_going_on() -> None:
    p = player(jitter_ms=50.0)
    x = tone(0.4, 300)
    p.add(("s", 0, 0), x[:800], 0, False, 0)
    run(p, 0.2)
    assert p.starvations == 1 and isinstance(p.events()[-1], Starved)
    p.add(("s", 0, 0), x[800:1000], 1, False, 0)  # 25 ms: not enough to go on
    assert not run(p, 0.1).any() and p.starvations == 1
    p.add(("s", 0, 0), x[1000:], 2, True, 0)
    run(p, 0.5)
    assert order(p) == [("s", 0)]


def test_within_a_stream_seq_order_wins_over_arrival_and_an_enqueued_place_holds_its_turn() -> None:
    p = player()
    p.add(("s", 1, 0), tone(0.05, 300), 0, True, 0)
    p.add(("s", 0, 0), tone(0.05, 400), 0, True, 0)
    run(p, 0.3)
    assert order(p) == [("s", 0), ("s", 1)]
    p.enqueue(("s", 2, 0))  # its turn came before any of its audio did
    p.add(("s", 3, 0), tone(0.05, 500), 0, True, 0)
    run(p, 0.2)
    assert order(p) == [] and p.starvations == 0  # 3 waits behind 2's place; an empty place never starts
    p.add(("s", 2, 0), tone(0.05, 600), 0, True, 0)
    run(p, 0.3)
    assert order(p) == [("s", 2), ("s", 3)]


def test_the_player_waits_for_no_seq_it_was_not_given() -> None:
    # Gaps are the node's rule (nodes/playback/seq_order.py): what the player holds plays without delay.
    p = player(jitter_ms=0.0)
    p.add(("s", 0, 0), tone(0.05, 300), 0, True, 0)
    run(p, 0.1)
    p.add(("s", 2, 0), tone(0.05, 400), 0, True, 0)  # seq 1 was skipped by the node
    run(p, 0.1)
    assert order(p) == [("s", 0), ("s", 2)]


def test_finish_turn_holds_the_floor_and_round_robin_alternates() -> None:
    for policy, expected in (
        ("finish-turn", [("a", 0), ("a", 1), ("b", 0), ("b", 1)]),
        ("round-robin", [("a", 0), ("b", 0), ("a", 1), ("b", 1)]),
    ):
        p = player(policy=policy, turn_hold_s=0.0)
        for key in (("a", 0, 0), ("b", 0, 0), ("b", 1, 0), ("a", 1, 0)):
            p.add(key, tone(0.05, 300), 0, True, 0)
        run(p, 0.5)
        assert order(p) == expected, policy


def test_finish_turn_keeps_the_floor_for_turn_hold_s_after_a_sentence() -> None:
    p = player(policy="finish-turn", turn_hold_s=0.3)
    p.add(("a", 0, 0), tone(0.05, 300), 0, True, 0)
    run(p, 0.1)
    p.add(("b", 0, 0), tone(0.05, 300), 0, True, 0)
    run(p, 0.1)
    assert order(p) == [("a", 0)]  # b waits: a's turn may go on
    p.add(("a", 1, 0), tone(0.05, 300), 0, True, 0)
    run(p, 0.2)
    assert order(p) == [("a", 1)]
    time.sleep(0.35)  # the turn hold is wall-clock time
    run(p, 0.2)
    assert order(p) == [("b", 0)]


def test_cancel_of_one_stream_fades_it_out_and_leaves_the_others() -> None:
    p = player()
    p.add(("a", 0, 0), tone(1.0, 300), 0, True, 0)
    p.add(("b", 0, 0), tone(0.1, 500), 0, True, 0)
    run(p, 0.2)
    assert [type(e) for e in p.events()] == [Started]
    dropped = p.cancel("a")
    assert dropped == [("a", 0, 0)]
    fade = p.render(BLOCK, 0)
    assert np.all(np.abs(np.diff(np.abs(fade[:16]))) < 0.2)  # a ramp, not a cliff
    run(p, 0.5)
    assert order(p) == [("b", 0)]


def test_pause_holds_position_and_volume_scales() -> None:
    p = player()
    x = tone(0.3, 440)
    p.add(("s", 0, 0), x, 0, True, 0)
    before = run(p, 0.1)
    p.pause()
    held = run(p, 0.2)
    assert not held[BLOCK:].any()  # silent once the ramp is down
    p.set_volume(0.5)
    p.resume()
    after = run(p, 0.4)
    played = np.concatenate([before, held, after])
    assert abs(np.count_nonzero(played) - x.size) <= 2 * BLOCK  # nothing lost, nothing repeated
    tail = after[np.nonzero(after)[0][-1] - 400 : np.nonzero(after)[0][-1] - 100]
    assert 0.14 < np.max(np.abs(tail)) < 0.16  # 0.5 x 0.3
    assert order(p) == [("s", 0)]
