"""Ingest: raw English in (TextIn on the SUB), speakable sentences out (Sentence on PUSH).

It is also the journal's owner, and the one who decides that a sentence is gone. A sentence is
journaled before it is sent and marked done on its played ack. It is sent again, with attempt + 1
and a `Resent` on the control channel so that every stage drops the older attempt it may still
hold:
  * at once, every open sentence, when a stage restarts (a new pid in its `ready` or heartbeat on
    the tap: what it held died with it) and when ingest itself starts (its send queue died);
  * when a stage fails the current attempt (a Failed ack): this counts against max_attempts;
  * when its stream's next sentence (the head: playback waits for it) passes its deadline
    (nodes/ingest/deadlines.py), counted from when it became the head, so sentences queued
    behind others never time out for waiting their turn.
It is given up (failed for good, a `GivenUp` on the control channel, the only word that lets
playback skip a seq) after max_attempts failures, or when it has been its stream's head for the
pipeline's give_up_s (bus/config.py) without being played. An ack of an older attempt while a
newer one is out is ignored; a played ack wins over everything recorded before it. Control
messages that producers send (cancel, flush) are re-published to every stage on the control PUB.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from bus import topology
from bus.events import Kind
from bus.journal import CANCELLED, FAILED, PLAYED, SENT, Entry, Journal
from bus.messages import (
    MAX_SENTENCE_CHARS,
    Cancel,
    ControlMessage,
    Failed,
    Flush,
    GivenUp,
    Message,
    Mode,
    Played,
    Resent,
    Sentence,
    TextIn,
)
from bus.node import Node, main_for
from bus.tap import pending, subscribe
from nodes.ingest.deadlines import WINDOW, DeadlineEstimator
from nodes.ingest.engine import Sentences
from nodes.ingest.settings import IngestSettings
from nodes.ingest.text.speakable import SentenceStream

PRUNE_EVERY_S = 60.0
MAX_PIDS = 64  # pids remembered per stage (its workers, and their restarts)
JOURNAL_RETRY_S = 1.0  # after the journal failed to write (a full disk), timers wait this long


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
        self._modes = self.journal.modes()  # set at run time (`stream-tts mode`); else [ingest] mode
        self.streams: dict[str, Sentences] = {}
        for stream, held in self.journal.pending_texts().items():  # what the last ingest held back
            self.streams[stream] = self._stream_from(held)
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self.give_up_s = self.config.give_up_s
        self._heads: dict[str, tuple[int, float]] = {}  # stream -> (its head seq, head since: monotonic)
        self._pids: dict[str, set[int]] = {}  # stage -> the pids its processes said they run as
        self._watched = set(topology.NODE_NAMES) - {self.name}
        self._stages = subscribe(self.config)  # restarts, seen on the tap
        self._left_open: list[Entry] | None = self.journal.open_entries()  # the last ingest's: re-sent
        # by the first tick (this one's send queue is new: what the last one had queued died with it)
        self._journal_back_at = 0.0
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
            self._write_pending([msg.stream] if msg.stream else None)
            self.journal.drop_turn(msg.stream or None)  # a held turn is cancelled with the rest
        elif isinstance(msg, Mode):
            self.journal.set_mode(msg.stream, msg.mode)
            self._modes = self.journal.modes()
            self.event(Kind.MODE, None, mode_stream=msg.stream, mode=msg.mode)
        elif isinstance(msg, Flush):
            for stream in [msg.stream] if msg.stream else list(self.streams):
                if stream in self.streams:
                    with contextlib.suppress(_NotTaken):  # said on the tap; the idle flush retries
                        yield from self._take(stream, lambda s: s.flush())
                        yield from self._end_turn(stream)
        yield msg  # on to every stage

    def tick(self) -> Iterator[Message]:
        now = time.monotonic()
        restarted = self._restarted()
        if self._left_open is not None:
            left, self._left_open = self._left_open, None
            yield from self._resend_open("ingest restarted", left)
            yield from self._given_up_again()  # a playback may have missed them meanwhile
        if restarted:
            yield from self._resend_open(f"{' and '.join(restarted)} restarted")
            if "playback" in restarted:  # it may have missed these: say them again
                yield from self._given_up_again()
        if now < self._journal_back_at:  # the journal failed to write: try again in a while
            return
        try:
            for stream in list(self.streams):  # a sentence that stopped growing (idle_flush_s)
                yield from self._take(stream, lambda s: s.poll(now))
            yield from self._watch_heads(now)
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY_S
                self.journal.prune()
        except (_NotTaken, sqlite3.Error) as exc:  # a full disk: what is journaled stays, nothing is lost
            self._journal_back_at = now + JOURNAL_RETRY_S
            if isinstance(exc, sqlite3.Error):
                self.event(Kind.ERROR, None, error=_journal_error(exc, self.config.data_dir), fatal=False)

    def close(self) -> None:
        if hasattr(self, "journal"):
            self.journal.close()
        if getattr(self, "_stages", None) is not None:
            self._stages.close(linger=0)

    # ---- recovery -------------------------------------------------------------------------------
    def _restarted(self) -> list[str]:
        """Stages with a process new since ingest first heard of that stage (a pid on the tap it has
        not seen: a restart, or a worker joining). A stage may run as several workers (translate):
        each keeps its pid, so the known pids are a set, not one."""
        new: list[str] = []
        for ev in pending(self._stages):
            pid = ev.detail.get("pid") if ev.kind in (Kind.READY, Kind.HEARTBEAT) else None
            if ev.node not in self._watched or type(pid) is not int:
                continue
            known = self._pids.setdefault(ev.node, set())
            if pid in known:
                continue
            if known and ev.node not in new:  # the first pids heard of a stage are no restart
                new.append(ev.node)
            known.add(pid)
            if len(known) > MAX_PIDS:  # pids of long-dead processes: forget the oldest ones
                known.discard(min(known))
        return new

    def _resend_open(self, why: str, among: list[Entry] | None = None) -> Iterator[Message]:
        """Every open sentence (of `among`, if given) again, in seq order per stream: what a dead
        process held is lost, and nobody can say which of them it held. Not counted against the
        retry budget."""
        entries = self.journal.open_entries()
        if among is not None:
            keep = {(e.stream, e.seq) for e in among}
            entries = [e for e in entries if (e.stream, e.seq) in keep]
        if entries:
            self.event(Kind.RETRY, None, reason=why, sentences=len(entries))
        for entry in entries:
            yield from self._resend(entry, why, failed=False, quiet=True)

    def _given_up_again(self) -> Iterator[Message]:
        """The GivenUp of every sentence finished unplayed lately, for a playback that may have
        missed them while it was down (it would wait give_up_s more for each)."""
        since = time.time_ns() - int(2 * self.give_up_s * 1e9)
        for entry in self.journal.given_up_since(since):
            yield GivenUp(stream=entry.stream, seq=entry.seq, reason="given up earlier")

    def _watch_heads(self, now: float) -> Iterator[Message]:
        """Each stream's next sentence: re-sent past its deadline, given up past give_up_s."""
        heads = self.journal.heads()
        for stream in set(self._heads) - {e.stream for e in heads}:
            del self._heads[stream]
        for entry in heads:
            seq, since = self._heads.get(entry.stream, (None, now))
            if seq != entry.seq:  # a new head: its deadline counts from now
                self._heads[entry.stream] = (entry.seq, now)
                since = now
                if seq is not None:
                    self.journal.set_deadline(entry.stream, entry.seq, self._deadline(entry.text))
                    continue
            if now - since >= self.give_up_s:
                yield from self._give_up(entry, f"not played within give_up_s ({self.give_up_s:g} s)")
            elif entry.deadline_ns <= time.time_ns():
                yield from self._resend(entry, "no ack before the deadline", failed=False)

    # ----------------------------------------------------------------------------------------
    def _text(self, msg: TextIn) -> Iterator[Message]:
        """A producer's text: journaled (its sentences, what is held back, its id) in one
        transaction, then `accepted`; a text id seen before is only acknowledged again."""
        said = {"stream": msg.stream, "id": msg.id, "source": msg.source}
        if msg.id and self.journal.has_text(msg.id):
            self.event(Kind.ACCEPTED, None, **said, again=True)
            return

        def feed(s: Sentences) -> list[str]:
            return s.feed(msg.text) + (s.flush() if msg.final else [])

        try:
            yield from self._take(msg.stream, feed, text_id=msg.id)
            if msg.final:
                yield from self._end_turn(msg.stream)
        except (_NotTaken, sqlite3.Error) as exc:
            why = str(exc) if isinstance(exc, _NotTaken) else _journal_error(exc, self.config.data_dir)
            self.event(Kind.REFUSED, None, **said, reason=why)
            return
        self.event(Kind.ACCEPTED, None, **said)

    def _take(
        self, stream: str, step: Callable[[Sentences], list[str]], text_id: str = ""
    ) -> Iterator[Sentence]:
        """Apply `step` to the stream's sentence engine, journal what it gives and what it still
        holds back in one transaction, then send the sentences. A journal that cannot be written
        (a full disk) leaves the stream as it was and raises _NotTaken saying why."""
        sentences = self.streams.get(stream)
        if sentences is None:
            sentences = self.streams[stream] = self._stream_from("")
        before = sentences.pending
        texts = step(sentences)
        if not texts and not text_id and sentences.pending == before:
            return
        brief = self._mode_of(stream) == "brief"  # the turn's sentences wait for its end
        try:
            entries = self.journal.commit(
                stream,
                [] if brief else [(t, self._deadline(t)) for t in texts],
                sentences.pending,
                text_id,
                held=texts if brief else None,
            )
        except sqlite3.Error as exc:
            self.streams[stream] = self._stream_from(before)  # as if this text never came
            why = _journal_error(exc, self.config.data_dir)
            self.counters["errors"] += 1
            self.event(Kind.ERROR, None, stream=stream, error=why, fatal=False)
            raise _NotTaken(why) from exc
        for entry in entries:
            sentence = Sentence(stream=stream, seq=entry.seq, text=entry.text)
            self.finished(sentence, text=entry.text)
            yield sentence

    def _mode_of(self, stream: str) -> str:
        return self._modes.get(stream) or self._modes.get("") or self.settings.mode

    def _end_turn(self, stream: str) -> Iterator[Sentence]:
        """The turn is over: its held sentences go out, all of them when the answer is short (or
        the stream is in full mode now), else one summary sentence made of them; in one
        transaction with the held turn's removal, so a turn gives its sentences or its summary
        once, never both."""
        held = self.journal.turn(stream)
        if not held:
            return
        summary = (
            self._mode_of(stream) == "brief" and sum(len(t) for t in held) > self.settings.brief_min_chars
        )
        texts = [summary_text(held)] if summary else held
        entries = self.journal.end_turn(stream, [(t, self._deadline(t)) for t in texts], summary)
        for entry in entries:
            sentence = Sentence(stream=stream, seq=entry.seq, text=entry.text, summary=summary)
            self.finished(sentence, text=entry.text, summary=summary, turn_sentences=len(held))
            yield sentence

    def _stream_from(self, held: str) -> Sentences:
        stream = SentenceStream.from_section(self.section)
        if held:
            stream.feed(held)  # held-back text is no sentence yet: feeding it again gives none
        return stream

    def _write_pending(self, streams: list[str] | None) -> None:
        for stream in streams if streams is not None else list(self.journal.pending_texts()):
            with contextlib.suppress(sqlite3.Error):
                self.journal.commit(stream, [], "")

    def _deadline(self, text: str) -> int:
        return time.time_ns() + int(self.deadlines.deadline_s(len(text)) * 1e9)

    def _again(self, entry: Entry, why: str) -> Iterator[Message]:
        """A stage failed the current attempt: send it once more, or give it up past max_attempts."""
        if entry.failures + 1 >= self.settings.max_attempts:
            yield from self._give_up(entry, f"failed {entry.failures + 1} times; last: {why}")
            return
        yield from self._resend(entry, why, failed=True)

    def _resend(self, entry: Entry, why: str, failed: bool, quiet: bool = False) -> Iterator[Message]:
        attempt = self.journal.retry(entry.stream, entry.seq, self._deadline(entry.text), failed=failed)
        if not quiet:
            self.event(Kind.RETRY, None, stream=entry.stream, seq=entry.seq, attempt=attempt, reason=why)
        yield Resent(stream=entry.stream, seq=entry.seq, attempt=attempt)  # older attempts are stale
        yield Sentence(
            stream=entry.stream, seq=entry.seq, text=entry.text, attempt=attempt, summary=bool(entry.summary)
        )

    def _give_up(self, entry: Entry, why: str) -> Iterator[Message]:
        """The sentence is gone: failed for good, and every stage (playback above all) told so."""
        self.journal.finish(entry.stream, entry.seq, FAILED, why)
        self.event(Kind.FAILED, None, stream=entry.stream, seq=entry.seq, reason=why)
        yield GivenUp(stream=entry.stream, seq=entry.seq, reason=why)

    def _ack(self, msg: Played | Failed) -> Iterator[Message]:
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


def summary_text(held: list[str]) -> str:
    """A turn's sentences, one a line, as the summary's source: whole sentences, as many as fit a
    message (a longer answer is summarised from its beginning)."""
    out: list[str] = []
    size = 0
    for text in held:
        if size + len(text) + 1 > MAX_SENTENCE_CHARS and out:
            break
        out.append(text[:MAX_SENTENCE_CHARS])
        size += len(text) + 1
    return "\n".join(out)


class _NotTaken(Exception):
    """A text or sentence the journal could not take; the message says why, for the producer."""


def _journal_error(exc: sqlite3.Error, data_dir: Path) -> str:
    text = str(exc)
    if "full" in text or "disk" in text:
        return f"no space left in {data_dir} (the journal cannot grow: {text}); free some and send again"
    return f"the journal in {data_dir} cannot be written: {text}"


def main(argv: list[str] | None = None) -> int:
    return main_for(IngestNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
