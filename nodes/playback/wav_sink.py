"""The WAV sink: one 16-bit WAV per sentence, written atomically (temp file, then rename).

Used when there is no sound device, and in tests: what would have been played is on disk."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WavSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, stream: str, seq: int, attempt: int) -> Path:
        safe = _UNSAFE.sub("_", stream)[:80] or "_"
        return self.folder / safe / f"{seq:06d}-{attempt}.wav"

    def write(self, stream: str, seq: int, attempt: int, pcm: np.ndarray, rate_hz: int) -> Path:
        path = self.path_for(stream, seq, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".wav.tmp")
        sf.write(str(tmp), np.clip(pcm, -1.0, 1.0), rate_hz, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
        return path
