"""Playback: audio chunks in, sound (or WAV files) out, a played/failed ack back to ingest.

Chunks are gathered per sentence (stream, seq) and put in index order; a sentence is played at
most once (a re-sent attempt of a sentence already played is dropped). Every played sentence
appends one JSON line to <data_dir>/played.jsonl: the record users and tests read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bus.messages import AudioChunk, Cancel, ControlMessage, Failed, Message, Played, Stamp
from bus.node import Node, main_for
from nodes.wav_sink import WavSink

PLAYED_LOG = "played.jsonl"
MAX_PENDING_SENTENCES = 256  # sentences being gathered at once; the oldest is failed past this


@dataclass
class _Gathering:
    first: AudioChunk
    chunks: dict[int, AudioChunk] = field(default_factory=dict)
    last_index: int | None = None

    def complete(self) -> bool:
        return self.last_index is not None and len(self.chunks) == self.last_index + 1


class PlaybackNode(Node):
    name = "playback"
    inputs = ("playback",)
    routes: ClassVar[dict[type[Message], str]] = {Played: "acks", Failed: "acks"}

    def setup(self) -> None:
        self.sink = WavSink(self.config.data_dir / "wav")
        self.played_log = self.config.data_dir / PLAYED_LOG
        self.played_log.parent.mkdir(parents=True, exist_ok=True)
        self.pending: dict[tuple[str, int, int], _Gathering] = {}
        self.played: set[tuple[str, int]] = _already_played(self.played_log)
        self.event("sink", sink="wav", folder=str(self.sink.folder))

    def handle(self, msg: Message) -> Iterable[Message]:
        if not isinstance(msg, AudioChunk):
            self.event("ignored", msg, type=msg.TYPE, reason="playback takes audio only")
            return ()
        return self._chunk(msg)

    def on_control(self, msg: ControlMessage) -> Iterable[Message]:
        if isinstance(msg, Cancel):
            for key in [k for k in self.pending if not msg.stream or k[0] == msg.stream]:
                del self.pending[key]
        return ()

    def _chunk(self, chunk: AudioChunk) -> Iterator[Message]:
        if (chunk.stream, chunk.seq) in self.played:
            self.event("duplicate", chunk, reason="sentence already played")
            return
        key = (chunk.stream, chunk.seq, chunk.attempt)
        gathering = self.pending.setdefault(key, _Gathering(first=chunk))
        gathering.chunks[chunk.index] = chunk
        if chunk.last:
            gathering.last_index = chunk.index
        if len(self.pending) > MAX_PENDING_SENTENCES:
            old_key = next(iter(self.pending))
            old = self.pending.pop(old_key)
            yield self._failed(old.first, "too many sentences waiting for their chunks")
        if gathering.complete():
            del self.pending[key]
            yield from self._play(gathering)

    def _play(self, g: _Gathering) -> Iterator[Message]:
        ordered = [g.chunks[i] for i in range(len(g.chunks))]
        last = ordered[-1]
        rates = {c.rate_hz for c in ordered}
        if len(rates) != 1 or any(c.sample_format != "f32le" or c.channels != 1 for c in ordered):
            yield self._failed(last, f"mixed or unsupported formats in one sentence: {sorted(rates)}")
            return
        pcm = np.concatenate([np.frombuffer(c.pcm, dtype="<f4") for c in ordered])
        first_ns = time.time_ns()
        path = self.sink.write(last.stream, last.seq, last.attempt, pcm, last.rate_hz)
        last_ns = time.time_ns()
        self.played.add((last.stream, last.seq))
        text_ja = "".join(dict.fromkeys(c.text_ja for c in ordered if c.text_ja))
        played = Played(
            stream=last.stream,
            seq=last.seq,
            attempt=last.attempt,
            samples=int(pcm.size),
            rate_hz=last.rate_hz,
            first_sample_wall_ns=first_ns,
            last_sample_wall_ns=last_ns,
            text_en=last.text_en,
            text_ja=text_ja,
            wav_path=str(path),
            stamps=last.stamps,
        )
        stamped = played.with_stamps((*last.stamps, Stamp.now(self.name)))
        self._log(stamped)  # type: ignore[arg-type]
        self.finished(
            stamped,
            samples=int(pcm.size),
            rate_hz=last.rate_hz,
            wav=str(path),
            rms=float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0,
        )
        yield played

    def _failed(self, chunk: AudioChunk, reason: str) -> Failed:
        self.event("failed", chunk, reason=reason)
        return Failed(
            stream=chunk.stream,
            seq=chunk.seq,
            attempt=chunk.attempt,
            stage=self.name,
            reason=reason,
            text_en=chunk.text_en,
        )

    def _log(self, played: Played) -> None:
        record: dict[str, Any] = {
            "stream": played.stream,
            "seq": played.seq,
            "attempt": played.attempt,
            "text_en": played.text_en,
            "text_ja": played.text_ja,
            "samples": played.samples,
            "rate_hz": played.rate_hz,
            "first_sample_wall_ns": played.first_sample_wall_ns,
            "last_sample_wall_ns": played.last_sample_wall_ns,
            "stamps": [s.to_wire() for s in played.stamps],
            "wav": played.wav_path,
        }
        with self.played_log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _already_played(path: Any) -> set[tuple[str, int]]:
    """(stream, seq) of every sentence in played.jsonl: a restarted playback plays none twice."""
    done: set[tuple[str, int]] = set()
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    done.add((str(rec["stream"]), int(rec["seq"])))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash
    except FileNotFoundError:
        pass
    return done


def main(argv: list[str] | None = None) -> int:
    return main_for(PlaybackNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
