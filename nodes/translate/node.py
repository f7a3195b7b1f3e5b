"""The translate node: one English Sentence in, its Japanese Clauses out as they are decoded.

Each sentence: protect code/paths/numbers (nodes/translate/placeholders.py), translate with the engine
(nodes/translate/llama/engine.py) given the last few pairs of the same stream, split and clean the decode
into clauses (nodes/translate/ja_text.py) and send each one the moment it is complete, the last marked.
An empty answer or one with no Japanese at all: a `retry` event on the tap and one strict retry,
then a Failed ack saying what the model said (`finished` counts the `attempts`); it is never
spoken. A model that did not load answers every sentence with a Failed that says why; nothing
accepted is dropped without an ack.

Config, section [translate] (every key optional):
    model             GGUF path (a split model: its first shard); default: the manifest's `size`
                      model under models/weights/
    size              manifest entry when `model` is not set: "auto" (default: the best translator
                      for this machine's memory, models/choose.py), Qwen2.5 "7b", "14b", "32b",
                      "72b", Qwen3 "qwen3-8b", "qwen3-14b", "30b-a3b"
    n_ctx             context window in tokens (4096)
    n_threads         CPU threads (0: llama.cpp's default)
    n_gpu_layers      layers offloaded (-1 all; default: all when llama.cpp has a GPU backend, else 0)
    min_clause_chars  a clause may end at 、 once it has this many characters (8)
    context_pairs     earlier (English, Japanese) pairs of the same stream sent along: at
                      least this many, fewer than twice as many (_context says why) (3)
    max_tokens        decode cap per sentence (256)
    yield_to_synthesize  "auto" (on when llama.cpp runs on a GPU), true or false: after a
                      sentence's first clause, hold the rest of its decoding while synthesize
                      makes that sentence's first chunk (see _yield_to_synthesize)
    yield_max_ms      the longest such hold (500)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar

import zmq

from bus import topology
from bus.errors import EngineError
from bus.events import Kind, SynthStarted
from bus.messages import BadMessage, Clause, Failed, Message, Sentence, TapEvent
from bus.node import HOST, Node, main_for
from bus.tap import events, subscribe
from nodes.translate.engine import Translator
from nodes.translate.ja_text import ClauseStream, OutClause
from nodes.translate.llama.engine import LlamaTranslator
from nodes.translate.placeholders import protect, restore
from nodes.translate.settings import DEFAULTS, translate_settings

BRIEF_FALLBACK_SENTENCES = 2  # a summary not ready in time: the turn's first sentences, this many
SYNTH_START_WAIT_S = 0.03  # synthesize says `started` within this when it is free for the sentence
YIELD_RELEASE = frozenset({Kind.FIRST_CHUNK, Kind.TEXT_WAIT, Kind.FINISHED, Kind.ERROR})
MAX_STREAMS = 64  # streams whose recent pairs are kept (least recently used forgotten first)
KEEP_EXTRA_PAIRS = 4  # pairs kept beyond the window (_context), for sentences arriving out of order


class TranslateNode(Node):
    name: ClassVar[str] = "translate"
    inputs = topology.node("translate").binds
    routes: ClassVar[dict[type[Message], str]] = {Clause: "synthesize", Failed: "acks"}

    engine: Translator | None = None
    min_clause_chars: int = DEFAULTS["min_clause_chars"]
    context_pairs: int = DEFAULTS["context_pairs"]

    _synth_events: zmq.Socket | None = None
    _yield_max_s: float = DEFAULTS["yield_max_ms"] / 1000
    _summary_wait_s: float = DEFAULTS["summary_wait_ms"] / 1000

    def setup(self) -> None:
        self._pairs: OrderedDict[str, dict[int, tuple[str, str]]] = OrderedDict()
        settings, knobs = translate_settings(self.config.section("translate"), self.config.base_dir)
        self.min_clause_chars = knobs["min_clause_chars"]
        self.context_pairs = knobs["context_pairs"]
        self._summary_wait_s = knobs["summary_wait_ms"] / 1000
        engine = LlamaTranslator(settings)
        self.engine = engine
        want = knobs["yield_to_synthesize"]
        if want is True or (want == "auto" and engine.backend != "cpu"):
            self._synth_events = subscribe(self.config)
            self._yield_max_s = knobs["yield_max_ms"] / 1000
        chosen = {"size": knobs["size"], "size_reason": knobs["size_reason"]} if knobs["size"] else {}
        self.event(
            Kind.BACKEND, **engine.describe(), **chosen, yield_to_synthesize=self._synth_events is not None
        )

    def handle(self, msg: Message) -> Iterator[Message]:
        if not isinstance(msg, Sentence):
            self.counters["dropped"] += 1
            self.event(Kind.DROPPED, msg, reason=f"translate takes sentences, got {msg.TYPE}")
            return
        t0 = time.monotonic()
        if self.engine is None:
            reason = f"translation model not loaded: {self.state_detail or 'setup did not finish'}"
            yield self._failed(msg, reason)
            self.finished(msg, clauses=0, failed=reason, total_ms=_ms(t0))
            return
        if msg.summary:
            yield from self._summary(msg, t0)
            return
        protected = protect(msg.text)
        if not protected.needs_translation:  # only code, paths, numbers: say them as written
            text = restore(protected.text, protected.originals).text.strip()
            if not text:
                yield self._failed(msg, "the sentence is empty: nothing to translate")
                self.finished(msg, clauses=0, failed="empty sentence", total_ms=_ms(t0))
                return
            yield self._clause(msg, 0, OutClause(text, True))
            self.finished(msg, clauses=1, first_clause_ms=_ms(t0), total_ms=_ms(t0), tokens=0, untranslated=1)
            return
        n, first_ms, tokens, stream, yielded_ms = 0, None, 0, None, 0.0
        said: list[str] = []  # what each attempt decoded, as it came out of the model
        for strict in (False, True):
            stream = ClauseStream(protected.originals, self.min_clause_chars)
            raw: list[str] = []
            try:
                for c in self._attempt(msg, protected.text, stream, strict, raw):
                    yield self._clause(msg, n, c)
                    n, first_ms = n + 1, first_ms if first_ms is not None else _ms(t0)
                    if n == 1 and not c.last:
                        yielded_ms = self._yield_to_synthesize(msg)
            except EngineError as exc:
                yield self._failed(msg, f"translation failed: {exc}")
                self.finished(msg, clauses=n, failed=str(exc), total_ms=_ms(t0), attempts=len(said) + 1)
                return
            finally:
                tokens += self._stats("generated_tokens")
            if not self.running:
                return  # shutting down mid-sentence: ingest re-sends what was never played
            for c in stream.finish():
                yield self._clause(msg, n, c)
                n, first_ms = n + 1, first_ms if first_ms is not None else _ms(t0)
            said.append("".join(raw))
            if stream.japanese_seen:
                break
            if not strict:  # on the tap before the second try, so a slow retry is visible as one
                self.event(Kind.RETRY, msg, reason=_no_japanese(said[-1]), said=said[-1][:120])
        assert stream is not None
        detail = {
            "clauses": n,
            "first_clause_ms": first_ms,
            "total_ms": _ms(t0),
            "tokens": tokens,
            "prompt_tokens": self._stats("prompt_tokens"),
            "evaluated_tokens": self._stats("evaluated_tokens"),
            "context_pairs": self._stats("context_pairs"),
            "retried": int(strict),
            "attempts": len(said),
            "thought_chars": self._stats("thought_chars"),
            "missing_placeholders": len(stream.missing),
            "dropped_clauses": len(stream.dropped),
            "yielded_ms": yielded_ms,
        }
        if not stream.japanese_seen:
            reason = f"{_no_japanese(said[-1])}, even after a retry"
            yield self._failed(msg, reason)
            self.finished(msg, failed=reason, **detail)
            return
        self._remember(msg, protected.text, "".join(stream.masked))
        self.finished(msg, **detail)

    def _summary(self, msg: Sentence, t0: float) -> Iterator[Message]:
        """Brief mode: a whole turn (one sentence a line) said as its gist, by the same model. It
        never holds speech hostage: with no clause of it within summary_wait_ms, the turn's first
        sentences are said instead (`summary_fallback` on the tap)."""
        assert self.engine is not None
        lines = [ln for ln in msg.text.split("\n") if ln.strip()]
        protected = protect(" \n".join(lines))
        stream = ClauseStream(protected.originals, self.min_clause_chars)
        n, first_ms, fell_back, why = 0, None, False, ""
        wait_until = t0 + self._summary_wait_s
        try:
            pieces = self.engine.translate(protected.text, [], brief=True)
            try:
                for piece in self.iter_until_stopped(pieces):
                    for c in stream.feed(piece):
                        yield self._clause(msg, n, c)
                        n, first_ms = n + 1, first_ms if first_ms is not None else _ms(t0)
                    if stream.done:
                        break
                    if n == 0 and time.monotonic() > wait_until:
                        fell_back, why = True, f"no summary within {self._summary_wait_s * 1000:.0f} ms"
                        break
            finally:
                close = getattr(pieces, "close", None)
                if callable(close):
                    close()
        except EngineError as exc:
            if n:
                raise
            fell_back, why = True, f"the summary failed: {exc}"
        if not fell_back:
            for c in stream.finish():
                yield self._clause(msg, n, c)
                n, first_ms = n + 1, first_ms if first_ms is not None else _ms(t0)
            if not stream.japanese_seen and n == 0:
                fell_back, why = True, "the summary had no Japanese in it"
        if fell_back:  # say the turn's first sentences, as a sentence would be said
            first = protect(" ".join(lines[:BRIEF_FALLBACK_SENTENCES]))
            stream = ClauseStream(first.originals, self.min_clause_chars)
            for c in [*self._attempt(msg, first.text, stream, False, []), *stream.finish()]:
                yield self._clause(msg, n, c)
                n, first_ms = n + 1, first_ms if first_ms is not None else _ms(t0)
        if n == 0:
            yield self._failed(msg, f"nothing to say of the turn ({why or 'an empty summary'})")
        self.finished(
            msg,
            summary=True,
            summary_fallback=fell_back,
            fallback_reason=why,
            turn_sentences=len(lines),
            clauses=n,
            first_clause_ms=first_ms,
            total_ms=_ms(t0),
        )

    def tick(self) -> Iterator[Message]:
        """Between sentences: drop the tap's backlog, so a hold reads only fresh events."""
        sock = self._synth_events
        while sock is not None and sock.poll(0):
            sock.recv_multipart()
        return iter(())

    def close(self) -> None:
        if self._synth_events is not None:
            self._synth_events.close(linger=0)
            self._synth_events = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    # ---- helpers ------------------------------------------------------------------------------
    def _attempt(
        self, msg: Sentence, text: str, stream: ClauseStream, strict: bool, raw: list[str]
    ) -> Iterator[OutClause]:
        """Clauses of one attempt as they are decoded (each raw piece also lands in `raw`);
        decoding stops when the stream is done."""
        assert self.engine is not None
        pieces = self.engine.translate(text, [] if strict else self._context(msg), strict=strict)
        try:
            for piece in self.iter_until_stopped(pieces):
                raw.append(piece)
                yield from stream.feed(piece)
                if stream.done:
                    break
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()  # ends llama's generate() now, not whenever it is collected

    def _yield_to_synthesize(self, msg: Sentence) -> float:
        """Hold this sentence's decoding while synthesize makes its first chunk; ms held.
        On one GPU the two cannot both run at full speed: decoding clause 2 alongside took the
        first chunk from 111 to 179 ms on an H200 (bench/results/ttfa-e2e-h200.md, run 4), and
        the first chunk is what the listener waits for. Synthesize says `started` at once when it
        is free (else it is busy with an earlier sentence, and this one goes on at once), then
        `first_chunk`, or `text_wait` if it needs clause 2 first. A synthesize on another host,
        or on its CPU, shares no GPU with this one: no hold. The hold never exceeds
        yield_max_ms, so a lost event costs at most that, and the audio does not wait on it."""
        sock = self._synth_events
        if sock is None:
            return 0.0
        key = (msg.stream, msg.seq, msg.attempt)
        t0 = time.monotonic()

        def said(timeout_s: float) -> Iterator[TapEvent]:  # synthesize's events of this sentence
            for ev in events(sock, timeout_s):
                if ev.node == "synthesize" and (ev.stream, ev.seq, ev.attempt) == key:
                    yield ev

        for ev in said(SYNTH_START_WAIT_S):
            if ev.kind in YIELD_RELEASE:
                return _ms(t0)
            if ev.kind == Kind.STARTED:
                try:
                    started = SynthStarted.from_detail(ev.detail)
                except BadMessage:
                    return _ms(t0)  # a synthesize that does not say where it runs: no hold
                if started.host != HOST or started.device == "cpu":
                    return _ms(t0)  # another machine, or not on a GPU: nothing to share
                break
        else:
            return _ms(t0)  # not started: busy with an earlier sentence, or not there at all
        for ev in said(self._yield_max_s - (time.monotonic() - t0)):
            if ev.kind in YIELD_RELEASE or not self.running:
                break
        return _ms(t0)

    def _clause(self, msg: Sentence, index: int, c: OutClause) -> Clause:
        return Clause(
            stream=msg.stream,
            seq=msg.seq,
            index=index,
            text=c.text,
            last=c.last,
            text_en=msg.text,
            attempt=msg.attempt,
        )

    def _failed(self, msg: Sentence, reason: str) -> Failed:
        return Failed.of(msg, self.name, reason)

    def _context(self, msg: Sentence) -> list[tuple[str, str]]:
        """This stream's pairs from seq `start` up to this sentence: at least the last
        `context_pairs` (N), at most 2N - 1. The window's start moves N seqs at a time, so for
        N - 1 sentences in N the prompt is the previous prompt plus its answer plus this
        sentence, which llama.cpp still holds: only the new turn is prefilled. A window sliding
        by one re-prefilled every pair each time (~120 tokens, +11 ms of first clause on the
        H200 with the 7B: bench/results/ttfa-e2e-h200.md)."""
        n = self.context_pairs
        if not n:
            return []
        pairs = self._pairs.get(msg.stream, {})
        start = max(0, (msg.seq // n - 1) * n)
        return [pairs[seq] for seq in sorted(pairs) if start <= seq < msg.seq]

    def _remember(self, msg: Sentence, english: str, japanese: str) -> None:
        if not self.context_pairs or not japanese:
            return
        pairs = self._pairs.setdefault(msg.stream, {})
        self._pairs.move_to_end(msg.stream)
        pairs[msg.seq] = (english, japanese)
        for seq in sorted(pairs)[: max(0, len(pairs) - 2 * self.context_pairs - KEEP_EXTRA_PAIRS)]:
            del pairs[seq]
        while len(self._pairs) > MAX_STREAMS:
            self._pairs.popitem(last=False)

    def _stats(self, name: str) -> int:
        stats = getattr(self.engine, "last_stats", None)
        return int(getattr(stats, name, 0))


def _no_japanese(said: str) -> str:
    """Why an attempt is not spoken, with what the model said (the first 120 characters)."""
    if not said.strip():
        return "the translation was empty"
    return f"no Japanese in the translation (model said {said.strip()[:120]!r})"


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 2)


def main(argv: list[str] | None = None) -> int:
    return main_for(TranslateNode, argv)
