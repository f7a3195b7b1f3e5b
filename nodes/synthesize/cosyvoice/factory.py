"""The CosyVoice engine for a model folder: v1 or CosyVoice2, told by the folder itself
(nodes/synthesize/cosyvoice/layout.py), so the node and the tools never ask which one runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodes.synthesize.cosyvoice.engine import EngineOptions
from nodes.synthesize.cosyvoice.layout import layout_of
from nodes.synthesize.engine import Synthesizer


def open_engine(model_dir: Path, options: EngineOptions | None = None) -> Synthesizer:
    """The Synthesizer for `model_dir`: CosyVoice1Engine for a v1 folder, CosyVoiceEngine otherwise."""
    if layout_of(model_dir).version == 1:
        from nodes.synthesize.cosyvoice.v1.engine import CosyVoice1Engine

        return CosyVoice1Engine(Path(model_dir), options)
    from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine

    return CosyVoiceEngine(Path(model_dir), options)


def load_model(model_dir: Path, device: str = "auto", dtype: str = "auto") -> Any:
    """The loaded model of either version (the doctor's check): it has `spk2info`, `fingerprint`,
    `model_dir`, `sample_rate`, `device` and `dtype`."""
    if layout_of(model_dir).version == 1:
        from nodes.synthesize.cosyvoice.v1.load import load_cosyvoice1

        return load_cosyvoice1(Path(model_dir), device, dtype)
    from nodes.synthesize.cosyvoice.load import load_cosyvoice2

    return load_cosyvoice2(Path(model_dir), device, dtype)
