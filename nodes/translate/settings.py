"""The [translate] table: its keys, their defaults, and what a bad value says.

A bad value is a ModelLoadError, so the node stays up in state "error" and says which key is
wrong (nodes/translate/node.py lists what each key does)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bus.errors import ModelLoadError
from nodes.translate.llama.engine import LlamaSettings

DEFAULTS: dict[str, Any] = {
    "size": "auto",
    "n_ctx": 4096,
    "n_threads": 0,
    "n_gpu_layers": None,
    "min_clause_chars": 8,
    "context_pairs": 3,
    "max_tokens": 256,
    "cpu_extra_buffers": "auto",
    "yield_to_synthesize": "auto",
    "yield_max_ms": 500,
    "summary_wait_ms": 3000,  # brief mode: no summary clause by then -> the turn's first sentences
}


def translate_settings(section: Mapping[str, Any], base_dir: Path) -> tuple[LlamaSettings, dict[str, Any]]:
    """Engine settings and node knobs from [translate]; a bad value is a ModelLoadError, so the
    node stays up and says which key is wrong."""
    cfg = {**DEFAULTS, **section}
    ints = {}
    for key in (
        "n_ctx",
        "n_threads",
        "min_clause_chars",
        "context_pairs",
        "max_tokens",
        "yield_max_ms",
        "summary_wait_ms",
    ):
        value = cfg[key]
        if type(value) is not int or value < 0 or (value == 0 and key in ("n_ctx", "max_tokens")):
            raise ModelLoadError(f"[translate] {key} must be a positive integer, got {value!r}")
        ints[key] = value
    hold = cfg["yield_to_synthesize"]
    if not (isinstance(hold, bool) or hold == "auto"):
        raise ModelLoadError(f'[translate] yield_to_synthesize must be "auto", true or false, got {hold!r}')
    n_gpu = cfg["n_gpu_layers"]
    if n_gpu is not None and type(n_gpu) is not int:
        raise ModelLoadError(f"[translate] n_gpu_layers must be an integer, got {n_gpu!r}")
    model = cfg.get("model")
    size, why = None, ""
    if model is None:
        from models.manifest import AUTO, WEIGHTS_DIR, ManifestError, load_manifest

        try:
            manifest = load_manifest()
            size = str(cfg["size"])
            if size == AUTO:  # the best translator for this machine's memory (models/choose.py)
                from models.choose import local_choice

                choice = local_choice(manifest, weights_dir=WEIGHTS_DIR)
                size, why = choice.size, choice.reason
            path = manifest.translator(size).local_path(WEIGHTS_DIR)
        except ManifestError as exc:
            raise ModelLoadError(f"[translate] size: {exc}") from exc
    elif isinstance(model, str) and model:
        path = Path(model).expanduser()
        path = path if path.is_absolute() else base_dir / path
    else:
        raise ModelLoadError(f"[translate] model must be a path to a GGUF file, got {model!r}")
    settings = LlamaSettings(
        model=path,
        n_ctx=ints["n_ctx"],
        n_threads=ints["n_threads"] or None,
        n_gpu_layers=n_gpu,
        max_tokens=ints["max_tokens"],
        cpu_extra_buffers=cfg["cpu_extra_buffers"],
    )
    return settings, {**ints, "yield_to_synthesize": hold, "size": size, "size_reason": why}
