"""Ingest: raw English in (TextIn on the SUB), speakable sentences out (Sentence on PUSH).

It is also the journal's owner: a sentence is journaled before it is sent, marked done on the
played ack, and sent again with attempt + 1 when its deadline passes (nodes/ingest/deadlines.py: from its
length and the measured end-to-end times) or when a stage reports the current attempt failed (a
stage that died mid-sentence looks just like that); after max_attempts sends it is failed for good.
An ack of an older attempt while a newer one is out is ignored. Control messages that producers
send (cancel, flush) are re-published to every stage on the control PUB.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import ClassVar

from bus import topology
from bus.events import Kind
from bus.journal import CANCELLED, FAILED, PLAYED, SENT, Entry, Journal
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
from nodes.ingest.deadlines import WINDOW, DeadlineEstimator
from nodes.ingest.engine import Sentences
from nodes.ingest.settings import IngestSettings
from nodes.ingest.text.speakable import SentenceStream

PRUNE_EVERY_S = 60.0


class IngestNode(Node):
    name = "ingest"
    inputs = topology.node("ingest").binds
    routes: ClassVar[dict[type[Message], str]] = {Sentence: "translate", ControlMessage: "control"}
    listens_control = False  # ingest is the control channel's publisher

    def setup(self) -> None:
        self.settings = IngestSettings.from_section(dict(self.config.section("ingest")))
        self.journal = Journal(self.config.data_dir / "journal.sqlite3")
        self.deadlines = DeadlineEstimator(self.settings.policy())
        self.deadlines.seed(self.journal.first_attempt_times(WINDOW))  # a restart keeps what it measured
        self.section = dict(self.config.section("ingest"))
        try:  # a bad [ingest] value fails here, at start, naming the section
            SentenceStream.from_section(self.section)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[ingest] has a bad value: {exc}") from exc
        self.streams: dict[str, Sentences] = {}
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self.event(Kind.JOURNAL, None, **self.journal.counts())

    def handle(self, msg: Message) -> Iterable[Message]:
        if isinstance(msg, TextIn):
            return self._text(msg)
        if isinstance(msg, Played | Failed):
            return self._ack(msg)
        self.event(Kind.IGNORED, msg, type=msg.TYPE, reason="ingest takes text and acks only")
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
            yield from self._again(entry, "no ack before the deadline")
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
        return time.time_ns() + int(self.deadlines.deadline_s(len(text)) * 1e9)

    def _again(self, entry: Entry, why: str) -> Iterator[Sentence]:
        """Send an open sentence once more (attempt + 1), or fail it for good past max_attempts."""
        if entry.attempt + 1 >= self.settings.max_attempts:
            self.journal.finish(entry.stream, entry.seq, FAILED, why)
            self.event(
                Kind.FAILED,
                None,
                stream=entry.stream,
                seq=entry.seq,
                reason=f"not played after {entry.attempt + 1} attempts; last: {why}",
            )
            return
        attempt = self.journal.retry(entry.stream, entry.seq, self._deadline(entry.text))
        self.event(Kind.RETRY, None, stream=entry.stream, seq=entry.seq, attempt=attempt, reason=why)
        yield Sentence(stream=entry.stream, seq=entry.seq, text=entry.text, attempt=attempt)

    def _ack(self, msg: Played | Failed) -> Iterator[Sentence]:
        entry = self.journal.get(msg.stream, msg.seq)
        if isinstance(msg, Failed):
            reason = f"{msg.stage}: {msg.reason}"
            if entry is not None and entry.state == SENT:
                if msg.attempt < entry.attempt:  # a newer attempt is on its way: it decides
                    self.event(
                        Kind.ACK, msg, state=FAILED, first=False, reason=reason, ignored="older attempt"
                    )
                    return
                self.event(Kind.ACK, msg, state=FAILED, first=False, reason=reason)
                yield from self._again(entry, reason)
                return
            self.event(Kind.ACK, msg, state=FAILED, first=False, reason=reason)
            return
        first = self.journal.finish(msg.stream, msg.seq, PLAYED)
        took_s = self._took_s(msg)
        if first and entry is not None and took_s is not None:
            self.deadlines.observe(len(entry.text), took_s)
        self.event(Kind.ACK, msg, state=PLAYED, first=first, took_s=took_s)

    def _took_s(self, msg: Played) -> float | None:
        """Seconds from this attempt leaving ingest to its ack arriving here (both ingest's clock)."""
        sent = next((st.sent_wall_ns for st in msg.stamps if st.stage == "ingest"), None)
        if sent is None or not self._recv_wall_ns:
            return None
        return round((self._recv_wall_ns - sent) / 1e9, 4)


def main(argv: list[str] | None = None) -> int:
    return main_for(IngestNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
