"""Synthesize: Japanese clauses in, PCM chunks out, one utterance per sentence.

The runtime is one single-threaded loop, and synthesis takes seconds, so the engine runs in a
worker thread: `handle(Clause)` feeds the sentence's TextFeed (the first clause starts the job,
`last` closes its text), and `handle`/`tick` drain what the worker made, pushing each AudioChunk
as soon as it exists (the worker wakes the loop: bus/node.py `wake`; the finished event's
`send_delay_ms` is the longest any chunk waited). Sentences are synthesized one at a time, in
arrival order; a sentence is identified by (stream, seq, attempt), and a clause seen twice is
dropped. A later attempt of a sentence cancels an earlier one still waiting in the queue
(ingest re-sent it: one is enough).

Tap events of a sentence's start, for whoever shares this machine's GPU (the translate node
waits on them, nodes/translate/node.py `yield_to_synthesize`): `started` (the engine took it; with this
host's name and the torch device), `text_wait` (it needs more text before its first chunk),
`first_chunk` (that chunk is sent).

Outcomes per sentence: chunks then one with last=True; nothing speakable -> a single empty
last chunk (so playback acks it) and a `skipped` event; any engine error (unknown voice,
deadline, model failure) -> Failed(stage="synthesize") and an `error` event, and the node takes
the next sentence; cancel -> the job stops, a `cancelled` event, nothing more is sent.

Config, [synthesize] (defaults in SynthSettings): model_dir (a CosyVoice2 or a CosyVoice v1 folder),
device ("auto": cuda, else mps or cpu, whichever is measured faster on the model; the `engine`
event at start shows both timings),
dtype ("auto": float16 on CUDA), voice ("" = the model's first speaker, else "default": see
nodes/synthesize/cosyvoice/voices.py), instruct, frontend
("kana" | "none"), first_hop_tokens, hop_tokens, deadline_s, max_text_tokens, seed, threads,
cuda_graphs ("auto": on when the device is CUDA; true / false), compile_flow and compile_lm
(torch.compile before the graphs are captured; on by default, acting only with the graphs);
v1_first_hop_tokens, v1_hop_tokens (CosyVoice v1's chunks).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bus import topology
from bus.errors import EngineError
from bus.events import FirstChunk, Kind, SynthStarted, TextWait
from bus.messages import AudioChunk, Cancel, Clause, ControlMessage, Failed, Message, Speed
from bus.node import HOST, Node, main_for
from nodes.synthesize.engine import Synthesizer
from nodes.synthesize.errors import NothingToSay, SynthesisCancelled, UnknownVoice
from nodes.synthesize.mora import mora_count
from nodes.synthesize.settings import SynthSettings

MAX_QUEUED_SENTENCES = 64  # sentences held for the engine; past this the input is not read (backpressure)
REMEMBER_DONE = 4096  # finished (stream, seq, attempt) keys kept to drop late duplicate clauses
STOP_JOIN_S = 5.0

Key = tuple[str, int, int]


@dataclass
class _Job:
    """One sentence's synthesis: the text feed in, the worker's output queue out."""

    key: Key
    first: Clause
    recv_wall_ns: int
    recv_mono_ns: int
    feed: Any
    out: queue.Queue[tuple[str, Any, float]] = field(default_factory=queue.Queue)
    indices: set[int] = field(default_factory=set)
    text_ja: str = ""
    text_en: str = ""
    chunks: int = 0
    samples: int = 0
    first_chunk_ms: float | None = None
    started: float | None = None
    cancelled: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    text_waited: bool = False
    text_done: bool = False  # its last clause came
    held: str = ""  # clauses too short to say alone, waiting for the next (min_mora)
    joined: int = 0  # how many clauses went with the next one
    send_delay_ms: float = 0.0  # the longest a made chunk waited for the loop to send it
    wake: Callable[[], None] = lambda: None  # the node's loop, woken to send what the worker put

    def put(self, kind: str, item: Any = None) -> None:
        """From the worker's thread: hand something to the node's loop, which sends it at once."""
        self.out.put((kind, item, time.monotonic()))
        self.wake()

    def note_text_wait(self) -> None:
        """The engine found no text waiting (its thread): said once, and only before any audio."""
        if not self.text_waited and not self.chunks:
            self.text_waited = True
            self.put("text_wait")


class SynthesizeNode(Node):
    name = "synthesize"
    inputs = topology.node("synthesize").binds
    routes: ClassVar[dict[type[Message], str]] = {AudioChunk: "playback", Failed: "acks"}

    def setup(self) -> None:
        self.engine: Synthesizer | None = None
        self.load_error = ""
        self.jobs: OrderedDict[Key, _Job] = OrderedDict()  # started or waiting, in order
        self.done: deque[Key] = deque(maxlen=REMEMBER_DONE)
        self.done_set: set[Key] = set()
        self.work: queue.Queue[_Job | None] = queue.Queue()
        self.kana: Any = None
        self.speeds: dict[str, float] = {}  # stream ("" = every stream) -> speed set at run time
        self.worker = threading.Thread(target=self._work, name="synthesize-worker", daemon=True)
        self.worker.start()
        try:
            self.settings = SynthSettings.from_section(self.config.section("synthesize"))
            self._load_frontend()
            self.engine = self._open_engine()
        except EngineError as exc:
            self.load_error = str(exc)
            raise
        except ValueError as exc:  # an option out of range
            self.load_error = f"[synthesize] {exc}"
            raise EngineError(self.load_error) from exc
        s = self.settings
        model_dir = self.config.path_setting("synthesize", "model_dir", s.model_dir)
        self.event(Kind.ENGINE, model_dir=str(model_dir), **self.engine.describe())
        # an unknown voice: state "error" with the reason; sentences fail
        self.event(Kind.VOICE, **self.engine.describe_voice(s.voice), configured=s.voice)

    @property
    def loaded(self) -> Synthesizer:
        """The engine, for work that exists only once it has loaded (a job, a chunk)."""
        assert self.engine is not None, "synthesize: no engine, yet a sentence is being made"
        return self.engine

    def _open_engine(self) -> Any:
        """CosyVoice2 or CosyVoice v1, as the model folder says (nodes/synthesize/cosyvoice/factory.py)."""
        from nodes.synthesize.cosyvoice.engine import EngineOptions
        from nodes.synthesize.cosyvoice.factory import open_engine
        from nodes.synthesize.cosyvoice.voices import voices_dir

        s = self.settings
        if s.threads > 0:
            import torch

            torch.set_num_threads(s.threads)
        opts = EngineOptions(
            device=s.device,
            dtype=s.dtype,
            first_hop_tokens=s.first_hop_tokens,
            hop_tokens=s.hop_tokens,
            deadline_s=s.deadline_s,
            max_text_tokens=s.max_text_tokens,
            min_token_text_ratio=s.min_token_text_ratio,
            max_token_text_ratio=s.max_token_text_ratio,
            instruct=s.instruct,
            seed=s.seed,
            voices_dir=voices_dir(self.config.data_dir),
            state_dir=self.config.data_dir,
            cuda_graphs=s.cuda_graphs,
            compile_flow=s.compile_flow,
            compile_lm=s.compile_lm,
            v1_first_hop_tokens=s.v1_first_hop_tokens,
            v1_hop_tokens=s.v1_hop_tokens,
        )
        return open_engine(self.config.path_setting("synthesize", "model_dir", s.model_dir), opts)

    def _load_frontend(self) -> None:
        if self.settings.frontend != "kana":
            return
        try:
            from nodes.synthesize.kana.reading import KanaFrontend

            self.kana = KanaFrontend()
        except Exception as exc:  # an optional stage: any failure means text passes through
            self.event(
                Kind.WARNING,
                reason=f"kana frontend unavailable ({type(exc).__name__}: {exc}); "
                "text goes to the synthesizer unchanged",
            )

    # ---- messages ---------------------------------------------------------------------------
    def handle(self, msg: Message) -> Iterable[Message]:
        if not isinstance(msg, Clause):
            self.event(Kind.IGNORED, msg, type=msg.TYPE, reason="synthesize takes clauses only")
            return ()
        return self._clause(msg)

    def _clause(self, msg: Clause) -> Iterator[Message]:
        key = (msg.stream, msg.seq, msg.attempt)
        if key in self.done_set:
            self.event(Kind.DUPLICATE, msg, index=msg.index, reason="sentence already finished")
            return
        job, new = self.jobs.get(key), False
        if job is None:
            if self.engine is None:
                self._remember(key)
                yield self._failed(msg, f"engine not loaded: {self.load_error}")
                return
            if len(self.jobs) >= MAX_QUEUED_SENTENCES:
                self._remember(key)
                yield self._failed(msg, f"synthesize queue full ({MAX_QUEUED_SENTENCES} sentences)")
                return
            from nodes.synthesize.engine import TextFeed

            for older in self.jobs.values():  # a re-sent attempt supersedes one still waiting its turn
                if older.key[:2] == key[:2] and older.key[2] < key[2] and older.started is None:
                    older.cancelled = True
                    older.feed.cancel()
            job = _Job(key, msg, self._recv_wall_ns, self._recv_mono_ns, TextFeed(), wake=self.wake)
            job.feed.on_wait = job.note_text_wait
            self.jobs[key], new = job, True
        if msg.index in job.indices:
            self.event(Kind.DUPLICATE, msg, index=msg.index, reason="clause already received")
        else:
            job.indices.add(msg.index)
            self._feed(job, msg)
        if new:  # after its first clause is in the feed: the engine never finds a new job empty
            self.work.put(job)
        yield from self._emit_ready()

    def _feed(self, job: _Job, msg: Clause) -> None:
        from nodes.synthesize.cosyvoice.engine import speakable, text_script

        before = speakable(job.text_ja)
        job.text_ja += msg.text
        job.text_en = msg.text_en or job.text_en
        if not before and speakable(job.text_ja) and text_script(job.text_ja) not in ("ja", "cjk"):
            self.event(
                Kind.WARNING,
                msg,
                reason=f"text is not Japanese (script {text_script(job.text_ja)}): spoken as it is",
                text=job.text_ja[:80],
            )
        text = msg.text
        if self.kana is not None and text.strip():
            try:
                text = self.kana.to_kana(text)
            except Exception as exc:  # a reading failure must not lose the clause
                self.event(
                    Kind.WARNING,
                    msg,
                    reason=f"kana frontend failed ({type(exc).__name__}: {exc}); clause passed through",
                )
        job.held += text
        if msg.last or mora_count(job.held) >= self.settings.min_mora:
            if job.held:
                job.feed.put(job.held)
            job.held = ""
        else:
            job.joined += 1  # too short to say alone: it goes with the next clause
        if msg.last:
            job.text_done = True
            job.feed.close()

    def on_control(self, msg: ControlMessage) -> Iterable[Message]:
        if isinstance(msg, Speed):  # from the next sentence on; a stream's own wins over every stream's
            if not msg.stream:
                self.speeds.clear()
            self.speeds[msg.stream] = msg.factor
            self.event(Kind.SPEED, None, speed_stream=msg.stream, factor=msg.factor)
        if isinstance(msg, Cancel):
            for job in list(self.jobs.values()):
                if not msg.stream or job.key[0] == msg.stream:
                    job.cancelled = True
                    job.feed.cancel()
        return ()

    def tick(self) -> Iterable[Message]:
        return self._emit_ready() if self.jobs else ()

    def accepting(self) -> bool:
        """A full queue reads no more sentences (they wait upstream), except while the sentence
        being made still waits for a clause of its own."""
        if len(self.jobs) < MAX_QUEUED_SENTENCES:
            return True
        return not next(iter(self.jobs.values())).text_done

    # ---- the worker and what it hands back -------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self.work.get()
            if job is None:
                return
            job.started = time.monotonic()
            job.put("started")
            try:
                if job.cancelled:
                    raise SynthesisCancelled("cancelled before it started")
                speed = self.speeds.get(job.key[0], self.speeds.get("", self.settings.speed))
                for chunk in self.loaded.synthesize(job.feed, self.settings.voice, speed=speed):
                    job.put("chunk", chunk)
                job.put("done")
            except EngineError as exc:
                job.put("error", exc)
            except Exception as exc:  # a bug in the engine: report it on this sentence, keep serving
                job.put("error", exc)

    def _emit_ready(self) -> Iterator[Message]:
        """Everything the worker has made for the sentence at the front, in order."""
        while self.jobs:
            job = next(iter(self.jobs.values()))
            try:
                kind, item, t = job.out.get_nowait()
            except queue.Empty:
                return
            if job.cancelled and kind == "chunk":
                continue  # cancelled: what was made meanwhile is dropped, the error item closes it
            if kind == "started":  # where it runs: translate holds only for a GPU it shares
                self.event(Kind.STARTED, job.first, **SynthStarted(HOST, self.loaded.device_type).detail())
                continue
            if kind == "text_wait":
                if not job.chunks:
                    self.event(Kind.TEXT_WAIT, job.first, **TextWait().detail())
                continue
            self._recv_wall_ns, self._recv_mono_ns = job.recv_wall_ns, job.recv_mono_ns
            try:
                if kind == "chunk":
                    first = job.first_chunk_ms is None
                    yield self._audio(job, item.pcm, item.last)
                    job.send_delay_ms = max(job.send_delay_ms, (time.monotonic() - t) * 1000)
                    if first and job.first_chunk_ms is not None:  # sent: the GPU is free again
                        self.event(
                            Kind.FIRST_CHUNK, job.first, **FirstChunk(round(job.first_chunk_ms, 2)).detail()
                        )
                    for k, v in item.timings.items():
                        job.timings[k] = job.timings.get(k, 0.0) + v
                    if item.last:
                        self._finish(job, t)
                elif kind == "done":  # the engine ended without a last chunk: close the sentence
                    if job.key in self.jobs:
                        yield self._audio(job, b"", True)
                        self._finish(job, t)
                else:
                    yield from self._error(job, item)
            finally:
                self._recv_wall_ns = self._recv_mono_ns = 0

    def _audio(self, job: _Job, pcm: Any, last: bool) -> AudioChunk:
        data = pcm if isinstance(pcm, bytes) else pcm.astype("<f4").tobytes()
        if job.first_chunk_ms is None and data:
            job.first_chunk_ms = (time.monotonic_ns() - job.recv_mono_ns) / 1e6
        chunk = AudioChunk(
            stream=job.key[0],
            seq=job.key[1],
            index=job.chunks,
            last=last,
            rate_hz=self.loaded.sample_rate_hz,
            pcm=data,
            text_ja=job.text_ja,
            text_en=job.text_en,
            attempt=job.key[2],
            stamps=job.first.stamps,
        )
        job.chunks += 1
        job.samples += len(data) // 4
        return chunk

    def _finish(self, job: _Job, t_done: float) -> None:
        self._close(job)
        audio_s = job.samples / self.loaded.sample_rate_hz
        wall = t_done - (job.started or t_done)
        self.finished(
            job.first,
            chunks=job.chunks,
            samples=job.samples,
            first_chunk_ms=job.first_chunk_ms,
            rtf=round(wall / audio_s, 4) if audio_s else None,
            audio_s=round(audio_s, 3),
            send_delay_ms=round(job.send_delay_ms, 2),
            short_clauses_joined=job.joined,
            **{k: round(v, 1) for k, v in job.timings.items()},
        )
        if self.state == "error" and self.engine is not None:  # e.g. a voice added since: healthy again
            self.state, self.state_detail = "ready", ""

    def _error(self, job: _Job, exc: BaseException) -> Iterator[Message]:
        self._close(job)
        if isinstance(exc, SynthesisCancelled) or job.cancelled:
            self.event(Kind.CANCELLED, job.first, chunks=job.chunks)
            return
        if isinstance(exc, NothingToSay):
            self.event(Kind.SKIPPED, job.first, reason=str(exc))
            yield self._audio(job, b"", True)
            return
        reason = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        self.counters["errors"] += 1
        self.event(Kind.ERROR, job.first, error=reason, fatal=False, error_type=type(exc).__name__)
        if isinstance(exc, UnknownVoice):
            self.state, self.state_detail = "error", reason
        yield self._failed(job.first, reason)

    def _failed(self, msg: Clause, reason: str) -> Failed:
        return Failed.of(msg, self.name, reason)

    def _close(self, job: _Job) -> None:
        self.jobs.pop(job.key, None)
        self._remember(job.key)

    def _remember(self, key: Key) -> None:
        if len(self.done) == self.done.maxlen:
            self.done_set.discard(self.done[0])
        self.done.append(key)
        self.done_set.add(key)

    def close(self) -> None:
        for job in getattr(self, "jobs", {}).values():
            job.cancelled = True
            job.feed.cancel()
        if hasattr(self, "worker"):
            self.work.put(None)
            self.worker.join(timeout=STOP_JOIN_S)
        if (engine := getattr(self, "engine", None)) is not None:
            engine.close()


def main(argv: list[str] | None = None) -> int:
    return main_for(SynthesizeNode, argv)
