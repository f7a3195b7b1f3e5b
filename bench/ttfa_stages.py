"""TTFA composed from per-stage measurements taken alone (`stream-tts bench --stages`), for a machine
where the whole pipeline cannot run (the GPU machine has no llama.cpp CUDA build in the same call,
and no sound card): the first-clause latency of each stage, added up.

A composition is not a measured distribution: the composed p50 is the sum of the stages' p50s and
the composed p95 the sum of their p95s (the stages' tails need not coincide, so it is an upper
estimate). Every stage carries the file and key it came from, and its floor where one is known.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORDER = ("ingest", "translate", "synthesize", "playback")
TRANSLATE_VARIANT = "fa-off graphs-on"  # the translate engine's defaults


def stage(
    p50: float, p95: float | None, source: str, floor: float | None = None, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"p50_ms": round(p50, 3), "p95_ms": None if p95 is None else round(p95, 3)}
    out.update(floor_ms=None if floor is None else round(floor, 3), source=source, **extra)
    if floor:
        out["ratio_p50"] = round(p50 / floor, 2)
    return out


def from_ingest(path: Path) -> dict[str, Any]:
    """Publisher -> ingest sent, from bench/ingest.py's JSON (its p99 stands in for p95)."""
    d = json.loads(path.read_text(encoding="utf-8"))["send_to_receive_ms"]
    return stage(d["p50"], d["p99"], f"{path.name}: send_to_receive_ms (p95 column = its p99)")


def from_translate(path: Path, model: str = "7b", variant: str = TRANSLATE_VARIANT) -> dict[str, Any]:
    """First clause (8 tokens: cached prefill + 8 decoded), from bench/translate_gpu.py's JSON."""
    v = json.loads(path.read_text(encoding="utf-8"))["models"][model]["variants"][variant]
    return stage(
        v["median"]["ttfc8_ms"],
        None,
        f"{path.name}: models.{model}.variants[{variant!r}].median.ttfc8_ms (median only; no p95 recorded)",
        v["floor"]["ttfc8_ms"],
    )


def from_playback(path: Path) -> dict[str, Any]:
    """First chunk received -> first sample at the device, from bench/playback.py's JSON; the floor is
    the device's own buffer latency."""
    d = json.loads(path.read_text(encoding="utf-8"))
    return stage(
        d["start_latency_ms_p50"],
        d["start_latency_ms_p95"],
        f"{path.name}: start_latency_ms ({d.get('stack', '?')}, {d.get('host', '?')})",
        d.get("device_latency_ms"),
    )


def compose(stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """TTFA p50/p95 as sums over the stages (p95: where a stage has none, its p50)."""
    missing = [s for s in ORDER if s not in stages]
    if missing:
        raise ValueError(f"stages missing: {', '.join(missing)}")
    p50 = sum(stages[s]["p50_ms"] for s in ORDER)
    p95 = sum(stages[s]["p95_ms"] if stages[s]["p95_ms"] is not None else stages[s]["p50_ms"] for s in ORDER)
    floors = [stages[s].get("floor_ms") for s in ORDER]
    floor = sum(f for f in floors if f) if all(f is not None for f in floors[1:]) else None
    worst = max(
        (s for s in ORDER if stages[s].get("ratio_p50")), key=lambda s: stages[s]["ratio_p50"], default=""
    )
    return {
        "ttfa_p50_ms": round(p50, 3),
        "ttfa_p95_ms": round(p95, 3),
        "floor_ms": None if floor is None else round(floor, 3),
        "largest_ratio_stage": worst,
        "note": "composed: sum of per-stage p50s (p95s) measured alone, not one end-to-end distribution",
    }


def table(stages: dict[str, dict[str, Any]], ttfa: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.1f}" if isinstance(x, float | int) else str(x)

    rows = ["| stage | p50 ms | p95 ms | floor ms | p50 / floor |", "|---|---|---|---|---|"]
    for s in ORDER:
        st = stages[s]
        rows.append(
            f"| {s} | {f(st['p50_ms'])} | {f(st['p95_ms'])} | {f(st.get('floor_ms'))} "
            f"| {f(st.get('ratio_p50'))} |"
        )
    rows.append(
        f"| **TTFA** | **{f(ttfa['ttfa_p50_ms'])}** | {f(ttfa['ttfa_p95_ms'])} | {f(ttfa['floor_ms'])} | |"
    )
    return "\n".join(rows)
