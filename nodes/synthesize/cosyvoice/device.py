"""Which device runs CosyVoice2 when `[synthesize] device = "auto"`: cuda > (mps or cpu, measured).

CUDA, when torch sees it, is taken as it is. On a Mac, MPS is not always the faster: the LM makes
one speech token per forward pass of a 0.5B model, and what a step costs there (kernel launches,
a host sync per token for sampling) can lose to the CPU on some machines and torch versions. So
both run a fixed short workload on the loaded model (`lm_step_ms`: a few LM steps, the work that
decides the time to the first chunk) and the faster is kept. The verdict is remembered in the
data dir (`device-choice.json`), keyed by the model's fingerprint and the torch version, so a
restart does not measure again; a new model or a torch upgrade measures afresh. A device named in
the config is taken as it is, unmeasured. A candidate that cannot run the model (an op MPS lacks)
loses, with the reason kept beside the timings.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bus.errors import ModelLoadError

VERDICT_FILE = "device-choice.json"
PROBE_PREFIX = 20  # inputs evaluated before the timed steps, like a prompt's first group
PROBE_WARM_STEPS = 3  # not timed: MPS compiles its kernels on first use
PROBE_STEPS = 8  # timed steps; each ends in a host sync, as sampling a token does


@dataclass(frozen=True)
class DeviceChoice:
    """The device chosen, how, and what was measured (ms per LM step per candidate)."""

    device: str
    why: str  # "config", "only candidate", "measured", "cached"
    ms_per_step: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # candidate -> why it could not run

    def as_event(self) -> dict[str, Any]:
        return asdict(self)


def candidates(setting: str) -> list[str]:
    """The devices `setting` allows, in order of preference; more than one: measure them."""
    if setting != "auto":
        return [setting]
    if torch.cuda.is_available():
        return ["cuda"]
    if torch.backends.mps.is_available():  # the one platform branch: a Mac with Metal
        return ["mps", "cpu"]
    return ["cpu"]


def move(model: Any, device: str) -> Any:
    """The loaded model's modules moved to `device` (as load_cosyvoice2 places them); `model`."""
    dev = torch.device(device)
    for module in (model.llm, model.flow, model.hift):
        module.to(dev)
    model.device = dev
    return model


def lm_step_ms(model: Any, steps: int = PROBE_STEPS) -> float:
    """Milliseconds per LM step of `model` where it is now: a prompt-sized prefix, a few warm-up
    steps, then `steps` timed single-token steps on the growing KV cache, each read back."""
    from nodes.synthesize.cosyvoice.stream import LmStep

    step = LmStep(model)
    with torch.inference_mode():
        x = model.llm.speech_embedding(torch.zeros(1, 1, dtype=torch.long, device=model.device))
        logp, cache = step(x.repeat(1, PROBE_PREFIX, 1), None)
        for _ in range(PROBE_WARM_STEPS):
            logp, cache = step(x, cache)
        int(logp.argmax())
        t0 = time.perf_counter()
        for _ in range(steps):
            logp, cache = step(x, cache)
            int(logp.argmax())
        return (time.perf_counter() - t0) * 1000 / steps


def verdict_key(model: Any) -> str:
    """What a verdict holds for: the model (its fingerprint and weight sizes), dtype, torch, CPU."""
    weights = [model.model_dir / n for n in ("llm.pt", "flow.pt")]
    sizes = ",".join(str(p.stat().st_size) for p in weights if p.is_file())
    dtype = str(model.dtype).removeprefix("torch.")
    return f"{model.fingerprint}/{sizes}/{dtype}/torch {torch.__version__}/{platform.machine()}"


def choose(
    devices: list[str], measure: Callable[[str], float], state_dir: Path | None, key: str
) -> DeviceChoice:
    """The faster of `devices` by `measure` (ms per step), or the verdict stored for `key`."""
    if len(devices) == 1:
        return DeviceChoice(devices[0], "only candidate")
    path = state_dir / VERDICT_FILE if state_dir is not None else None
    stored = _read(path).get(key)
    if isinstance(stored, dict) and stored.get("device") in devices:
        return DeviceChoice(str(stored["device"]), "cached", dict(stored.get("ms_per_step", {})))
    ms: dict[str, float] = {}
    errors: dict[str, str] = {}
    for dev in devices:
        try:
            ms[dev] = round(measure(dev), 3)
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            errors[dev] = f"{type(exc).__name__}: {exc}"[:300]
    if not ms:
        raise ModelLoadError(f"the model runs on none of {', '.join(devices)}: {errors}")
    best = min(ms, key=ms.__getitem__)
    if path is not None and not errors:  # a failure may be passing (memory): measure again next time
        _write(path, key, {"device": best, "ms_per_step": ms, "measured_unix": int(time.time())})
    return DeviceChoice(best, "measured", ms, errors)


def _read(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # torn or hand-edited: measure again and rewrite it
    return data if isinstance(data, dict) else {}


def _write(path: Path, key: str, verdict: dict[str, Any]) -> None:
    """Add one verdict, atomically; a data dir that cannot be written only costs a re-measure."""
    data = {**_read(path), key: verdict}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".device-choice-", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
