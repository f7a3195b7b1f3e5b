"""Ingest: raw English in (TextIn on the SUB), speakable sentences out (Sentence on PUSH).

It is also the journal's owner: a sentence is journaled before it is sent, marked done on the
played/failed ack, and sent again with attempt + 1 when its deadline passes (bounded). Control
messages that producers send (cancel, flush) are re-published to every stage on the control PUB.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from bus.journal import CANCELLED, FAILED, PLAYED, Journal
from bus.messages import (
    Cancel,
    ControlMessage,
    Failed,
    Flush,
    Message,
    Played,
    Sentence,
    TextIn,
)
from bus.node import Node, main_for
from nodes.segmenter import Segmenter
from nodes.speakable import to_speakable

PRUNE_EVERY_S = 60.0


@dataclass(frozen=True)
class IngestSettings:
    idle_flush_s: float = 2.0  # a sentence with no end is sent after this much silence
    deadline_base_s: float = 60.0  # time a sentence may take end to end before it is re-sent
    deadline_per_char_s: float = 0.5
    max_attempts: int = 3  # sends per sentence before it is reported failed

    @classmethod
    def from_section(cls, section: dict[str, object]) -> IngestSettings:
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        return cls(**known)  # type: ignore[arg-type]


class IngestNode(Node):
    name = "ingest"
    inputs = ("text", "acks")
    routes: ClassVar[dict[type[Message], str]] = {Sentence: "translate", Cancel: "control", Flush: "control"}
    listens_control = False  # ingest is the control channel's publisher

    def setup(self) -> None:
        self.settings = IngestSettings.from_section(dict(self.config.section("ingest")))
        self.journal = Journal(self.config.data_dir / "journal.sqlite3")
        self.segmenters: dict[str, Segmenter] = {}
        self.last_fed: dict[str, float] = {}
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self.event("journal", None, **self.journal.counts())

    def handle(self, msg: Message) -> Iterable[Message]:
        if isinstance(msg, TextIn):
            return self._text(msg)
        if isinstance(msg, Played | Failed):
            self._ack(msg)
            return ()
        self.event("ignored", msg, type=msg.TYPE, reason="ingest takes text and acks only")
        return ()

    def on_control(self, msg: ControlMessage) -> Iterable[Message]:
        if isinstance(msg, Cancel):
            streams = [msg.stream] if msg.stream else list(self.segmenters)
            for stream in streams:
                self.segmenters.pop(stream, None)
                for entry in self.journal.open_entries(stream or None):
                    self.journal.finish(entry.stream, entry.seq, CANCELLED, msg.reason or "cancelled")
            if not msg.stream:
                for entry in self.journal.open_entries():
                    self.journal.finish(entry.stream, entry.seq, CANCELLED, msg.reason or "cancelled")
        elif isinstance(msg, Flush):
            yield from self._flush([msg.stream] if msg.stream else list(self.segmenters))
        yield msg  # on to every stage

    def tick(self) -> Iterator[Message]:
        now = time.monotonic()
        idle = [s for s, t in self.last_fed.items() if now - t >= self.settings.idle_flush_s]
        yield from self._flush(idle)
        for entry in self.journal.due(time.time_ns()):
            if entry.attempt + 1 >= self.settings.max_attempts:
                self.journal.finish(entry.stream, entry.seq, FAILED, "no ack before the deadline")
                self.event(
                    "failed",
                    None,
                    stream=entry.stream,
                    seq=entry.seq,
                    reason=f"not played after {entry.attempt + 1} attempts",
                )
                continue
            attempt = self.journal.retry(entry.stream, entry.seq, self._deadline(entry.text))
            self.event("retry", None, stream=entry.stream, seq=entry.seq, attempt=attempt)
            yield Sentence(stream=entry.stream, seq=entry.seq, text=entry.text, attempt=attempt)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            self.journal.prune()

    def close(self) -> None:
        if hasattr(self, "journal"):
            self.journal.close()

    # ----------------------------------------------------------------------------------------
    def _text(self, msg: TextIn) -> Iterator[Message]:
        seg = self.segmenters.setdefault(msg.stream, Segmenter())
        sentences = seg.feed(msg.text)
        if msg.final:
            sentences += seg.flush()
            self.last_fed.pop(msg.stream, None)
        else:
            self.last_fed[msg.stream] = time.monotonic()
        for text in sentences:
            yield from self._sentence(msg.stream, text)

    def _flush(self, streams: list[str]) -> Iterator[Message]:
        for stream in streams:
            self.last_fed.pop(stream, None)
            seg = self.segmenters.get(stream)
            for text in seg.flush() if seg else []:
                yield from self._sentence(stream, text)

    def _sentence(self, stream: str, raw: str) -> Iterator[Sentence]:
        text = to_speakable(raw)
        if not text:
            self.event("skipped", None, stream=stream, reason="nothing speakable", raw=raw[:200])
            return
        entry = self.journal.add(stream, text, self._deadline(text))  # journaled before it is sent
        sentence = Sentence(stream=stream, seq=entry.seq, text=text)
        self.finished(sentence, text=text)
        yield sentence

    def _deadline(self, text: str) -> int:
        s = self.settings
        return time.time_ns() + int((s.deadline_base_s + s.deadline_per_char_s * len(text)) * 1e9)

    def _ack(self, msg: Played | Failed) -> None:
        state = PLAYED if isinstance(msg, Played) else FAILED
        reason = msg.reason if isinstance(msg, Failed) else ""
        first = self.journal.finish(msg.stream, msg.seq, state, reason)
        self.event("ack", msg, state=state, first=first, **({"reason": reason} if reason else {}))


def main(argv: list[str] | None = None) -> int:
    return main_for(IngestNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
