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
from nodes.speakable import SentenceStream

PRUNE_EVERY_S = 60.0


@dataclass(frozen=True)
class IngestSettings:
    """Journal and re-send knobs; the text-shaping keys of [ingest] are SentenceStream's."""

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
    routes: ClassVar[dict[type[Message], str]] = {Sentence: "translate", ControlMessage: "control"}
    listens_control = False  # ingest is the control channel's publisher

    def setup(self) -> None:
        self.settings = IngestSettings.from_section(dict(self.config.section("ingest")))
        self.journal = Journal(self.config.data_dir / "journal.sqlite3")
        self.section = dict(self.config.section("ingest"))
        SentenceStream.from_section(self.section)  # a bad [ingest] key fails here, at start
        self.streams: dict[str, SentenceStream] = {}
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
            for stream in [msg.stream] if msg.stream else list(self.streams):
                self.streams.pop(stream, None)
            for entry in self.journal.open_entries(msg.stream or None):  # cancelled: never retried
                self.journal.finish(entry.stream, entry.seq, CANCELLED, msg.reason or "cancelled")
        elif isinstance(msg, Flush):
            for stream in [msg.stream] if msg.stream else list(self.streams):
                for text in self.streams[stream].flush() if stream in self.streams else []:
                    yield self._sentence(stream, text)
        yield msg  # on to every stage

    def tick(self) -> Iterator[Message]:
        now = time.monotonic()
        for stream, sentences in list(self.streams.items()):
            for text in sentences.poll(now):  # a sentence that stopped growing (idle_flush_s)
                yield self._sentence(stream, text)
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
        stream = self.streams.get(msg.stream)
        if stream is None:
            stream = self.streams[msg.stream] = SentenceStream.from_section(self.section)
        sentences = stream.feed(msg.text)
        if msg.final:
            sentences += stream.flush()
        for text in sentences:
            yield self._sentence(msg.stream, text)

    def _sentence(self, stream: str, text: str) -> Sentence:
        entry = self.journal.add(stream, text, self._deadline(text))  # journaled before it is sent
        sentence = Sentence(stream=stream, seq=entry.seq, text=text)
        self.finished(sentence, text=text)
        return sentence

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
