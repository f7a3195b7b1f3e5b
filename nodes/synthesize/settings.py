"""The [synthesize] table: the node's own keys, and the engine's with the engine's defaults.
A wrong key or a value of the wrong kind is an EngineError: the node stays up and says which."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from bus.config import unknown_keys
from bus.errors import EngineError
from bus.messages import MAX_SPEED, MIN_SPEED
from nodes.synthesize.cosyvoice.engine import EngineOptions


@dataclass(frozen=True)
class SynthSettings:
    """The [synthesize] table: the node's own keys, and the engine's with the engine's defaults."""

    model_dir: str = "models/weights/CosyVoice2-0.5B"
    device: str = EngineOptions.device
    dtype: str = EngineOptions.dtype
    voice: str = ""
    instruct: str = EngineOptions.instruct
    frontend: str = "kana"
    first_hop_tokens: int = EngineOptions.first_hop_tokens
    hop_tokens: int = EngineOptions.hop_tokens
    deadline_s: float = EngineOptions.deadline_s
    max_text_tokens: int = EngineOptions.max_text_tokens
    min_token_text_ratio: float = EngineOptions.min_token_text_ratio
    max_token_text_ratio: float = EngineOptions.max_token_text_ratio
    seed: int = EngineOptions.seed
    threads: int = 0  # torch CPU threads; 0 = torch's default
    speed: float = 1.0  # 0.5..2.0: faster or slower speech (`stream-tts speed` changes it at run time)
    min_mora: int = 8  # a clause shorter than this (in mora, read in kana) goes with the next; 0: off
    # "auto" | true | false (a TOML bool is taken as "true" / "false")
    cuda_graphs: str = EngineOptions.cuda_graphs
    compile_flow: bool = EngineOptions.compile_flow
    compile_lm: bool = EngineOptions.compile_lm
    v1_first_hop_tokens: int = EngineOptions.v1_first_hop_tokens  # CosyVoice v1 only
    v1_hop_tokens: int = EngineOptions.v1_hop_tokens

    @classmethod
    def from_section(cls, section: Any) -> SynthSettings:
        kinds = {f.name: type(f.default) for f in fields(cls)}
        if why := unknown_keys("synthesize", section, kinds):
            raise EngineError(why)
        values: dict[str, Any] = {}
        for key, value in section.items():
            want = kinds[key]
            if key == "cuda_graphs" and isinstance(value, bool):
                value = "true" if value else "false"
            ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value, ok = float(value), True
            if not ok:
                raise EngineError(f"[synthesize] {key} must be {want.__name__}, got {value!r}")
            values[key] = value
        if values.get("frontend", "kana") not in ("kana", "none"):
            raise EngineError('[synthesize] frontend must be "kana" or "none"')
        if values.get("cuda_graphs", "auto") not in ("auto", "true", "false"):
            raise EngineError('[synthesize] cuda_graphs must be "auto", true or false')
        if not MIN_SPEED <= values.get("speed", 1.0) <= MAX_SPEED:
            raise EngineError(f"[synthesize] speed must be {MIN_SPEED}..{MAX_SPEED}, got {values['speed']}")
        return cls(**values)
