"""Tiny random-weight models in the real formats, so the real loading and inference code of both
engines runs everywhere (tests, CI, `stream-tts up --tiny`) without any download.

What they are made of: a qwen2-architecture GGUF (nodes/translate/llama/tiny.py: real tokenizer metadata
and Qwen2.5's chat template, a few hundred KB) and a CosyVoice2 folder in the released layout
(nodes/synthesize/cosyvoice/tiny.py: the real module classes at shrunk sizes, ~60 MB). The speech they
make is noise; the path it takes is the real one. `stream-tts models tiny DIR` also writes a tiny
CosyVoice v1 folder (nodes/synthesize/cosyvoice/v1/tiny.py, ~12 MB: the CosyVoice-300M-SFT layout).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from bus.config import Config

GGUF_NAME = "tiny-qwen2.gguf"
COSYVOICE_NAME = "tiny-cosyvoice2"
COSYVOICE1_NAME = "tiny-cosyvoice1"  # CosyVoice v1 (the CosyVoice-300M-SFT layout): `models tiny` only
STAMP = ".complete"


def build_tiny_models(folder: Path, seed: int = 0, progress: bool = False) -> tuple[Path, Path]:
    """Write both tiny models into `folder` (skipped when a complete build is already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    gguf, cosy = folder / GGUF_NAME, folder / COSYVOICE_NAME
    stamp = folder / STAMP
    if stamp.exists() and stamp.read_text() == str(seed) and gguf.exists() and cosy.is_dir():
        return gguf, cosy
    from nodes.synthesize.cosyvoice.tiny import write_tiny_cosyvoice2
    from nodes.translate.llama.tiny import write_tiny_qwen2_gguf

    if progress:
        print(f"I models: writing tiny random-weight models into {folder} ...", flush=True)
    write_tiny_qwen2_gguf(gguf, seed=seed)
    write_tiny_cosyvoice2(cosy, seed=seed)
    stamp.write_text(str(seed))
    return gguf, cosy


def build_tiny_cosyvoice1(folder: Path, seed: int = 0) -> Path:
    """A tiny CosyVoice v1 folder (nodes/synthesize/cosyvoice/v1/tiny.py) in `folder`, with the real
    model's speaker names (日语男, 中文女, ...); skipped when a complete build is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    out, stamp = folder / COSYVOICE1_NAME, folder / f"{STAMP}-{COSYVOICE1_NAME}"
    if stamp.exists() and stamp.read_text() == str(seed) and out.is_dir():
        return out
    from nodes.synthesize.cosyvoice.v1.tiny import write_tiny_cosyvoice1

    write_tiny_cosyvoice1(out, seed=seed)
    stamp.write_text(str(seed))
    return out


def tiny_config(config: Config, folder: Path, progress: bool = False) -> Path:
    """A config file: the user's own (if any) with both engines pointed at the tiny models."""
    gguf, cosy = build_tiny_models(folder, progress=progress)
    raw: dict[str, Any] = {}
    if config.path is not None:
        raw = tomllib.loads(config.path.read_text(encoding="utf-8"))
        for key, value in raw.get("endpoints", {}).items():  # keep the user's endpoints
            raw["endpoints"][key] = value
    raw.setdefault("translate", {})["model"] = str(gguf)
    raw["translate"].setdefault("max_tokens", 32)  # random weights ramble: keep the noise short
    raw.setdefault("synthesize", {})["model_dir"] = str(cosy)
    raw["synthesize"].setdefault("voice", "")  # the tiny model's first speaker
    raw["data_dir"] = str(config.data_dir)
    out = folder.parent / "tiny.toml"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(raw), encoding="utf-8")
    os.replace(tmp, out)
    return out
