"""The WAV sink: one 16-bit WAV per sentence, written atomically (temp file, then rename).

Used when there is no sound device, and in tests: what would have been played is on disk, at
<folder>/<stream>-<hash>/<seq>-<attempt>.wav. The stream's name is made safe for a file name
(other characters become "_", at most 80 kept) and followed by a hash of the exact name, so
streams that read alike once made safe (`col/y`, `col_y`; `Cli`, `cli` on a case-insensitive
disk) never share a folder, and one stream always has the same one."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
HASH_CHARS = 12  # hex digits of the stream name's SHA-256 in its folder's name (48 bits)


class WavSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, stream: str, seq: int, attempt: int) -> Path:
        return self.folder / stream_folder(stream) / f"{seq:06d}-{attempt}.wav"

    def write(self, stream: str, seq: int, attempt: int, pcm: np.ndarray, rate_hz: int) -> Path:
        path = self.path_for(stream, seq, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".wav.tmp")
        sf.write(str(tmp), np.clip(pcm, -1.0, 1.0), rate_hz, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
        return path


def stream_folder(stream: str) -> str:
    """The folder name of a stream's WAV files: one per stream, never two streams' (module doc)."""
    safe = _UNSAFE.sub("_", stream)[:80] or "_"
    digest = hashlib.sha256(stream.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    return f"{safe}-{digest}"
