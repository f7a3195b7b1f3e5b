"""Playback: audio chunks in, sound out (or WAV files), a played/failed ack back to ingest.

Chunks are gathered per sentence (stream, seq, attempt). Both sinks send a stream's sentences out
by one rule (nodes/playback/seq_order.py): in seq order, a stream taken up after the last seq in
played.jsonl (any seq after a cancel); a sentence whose earlier seq is missing waits for it until
ingest gives it up (GivenUp on the control channel), or, should that word be lost, twice the
pipeline's give_up_s; then the gap is skipped with a `skipped` event, and a skipped one arriving
later is failed (once whole), never played out of order. WAV files are written whole, in that
order. On the device a sentence goes out with its first chunk: the player (player.py) gets its
place, then each chunk as it comes, so the next sentence is buffered while the one before plays.
The device stream opens with the first chunk, is fed silence between sentences, and closes after
`idle_close_s` of nothing.
A sentence is acked when the player reports that its last sample leaves the device (DAC time from
the stream's callback), not when it was queued. With no usable device the node says so once and
writes one WAV per sentence instead; a device that dies mid-run is rescanned and reopened, or else
the node falls back to WAVs; either way every sentence it holds (the one in hand too) is kept.
Every played sentence appends one JSON line to <data_dir>/played.jsonl; a sentence is played at most
once (a re-sent attempt of a sentence already played is dropped, and acked again when its last chunk
comes: the first ack may have died with a crash).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf

from bus import topology
from bus.events import Kind
from bus.messages import (
    AudioChunk,
    Cancel,
    ControlMessage,
    Failed,
    Flush,
    GivenUp,
    Message,
    Pause,
    Played,
    Resume,
    Stamp,
    Volume,
)
from bus.node import Node, main_for
from nodes.playback.device.output import AudioDeviceError, AudioOutput, OpenInfo, SoundDeviceOutput, rescan
from nodes.playback.player import Done, Key, Player, PlayerSettings, Started, Starved
from nodes.playback.seq_order import SeqOrder, Turn, lowest_per_stream
from nodes.playback.settings import PlaybackSettings, Resampler, mono_f32
from nodes.playback.wav_sink import WavSink

PLAYED_LOG = "played.jsonl"
MAX_PENDING_SENTENCES = 256  # sentences held at once; the oldest is failed past this
RESCAN_TIMEOUT_S = 3.0  # PortAudio re-initialisation after a device loss; past this: WAV fallback

log = logging.getLogger("stream_tts")


@dataclass
class _Held:
    """A sentence playback holds until it is acked: its chunks, and how far they reached the player."""

    first: AudioChunk
    arrived_wall_ns: int
    arrived_mono_ns: int
    chunks: dict[int, AudioChunk] = field(default_factory=dict)
    arrivals: dict[int, int] = field(default_factory=dict)
    last_index: int | None = None
    out: bool = False  # its turn came (nodes/playback/seq_order.py): written, or handed to the player
    fed: int = 0
    resampler: Resampler | None = None
    touched: float = 0.0

    @property
    def key(self) -> Key:
        return (self.first.stream, self.first.seq, self.first.attempt)

    def complete(self) -> bool:
        """Every chunk 0..last is here (indices, not a count: a stray index is no chunk of it)."""
        return self.last_index is not None and all(i in self.chunks for i in range(self.last_index + 1))

    def pcm(self) -> np.ndarray:
        return np.concatenate([mono_f32(self.chunks[i]) for i in sorted(self.chunks)] or [np.zeros(0)])

    def text_ja(self) -> str:
        return "".join(dict.fromkeys(c.text_ja for _, c in sorted(self.chunks.items()) if c.text_ja))

    def samples(self) -> int:
        return sum(c.samples for c in self.chunks.values())


class PlaybackNode(Node):
    name = "playback"
    inputs = topology.node("playback").binds
    routes: ClassVar[dict[type[Message], str]] = {Played: "acks", Failed: "acks"}
    poll_ms = 10  # acks are due when a sentence's last sample leaves the device: look often

    def setup(self) -> None:
        # State first, so a node whose [playback] is refused (state "error") still answers: it
        # holds what comes, and says why on the tap.
        self.s = PlaybackSettings()
        self.sink = WavSink(self.config.data_dir / "wav")
        self.played_log = self.config.data_dir / PLAYED_LOG
        self.played_log.parent.mkdir(parents=True, exist_ok=True)
        self.played: set[tuple[str, int]] = _already_played(self.played_log)
        self.order = SeqOrder(2 * self.config.give_up_s, self.played)
        self.held: dict[Key, _Held] = {}
        self.acks_due: list[Done] = []
        self.max_seq: dict[str, int] = {}
        self.cut_seq: dict[str, int] = {}  # stream -> highest seq a cancel dropped (chunks with no stamps)
        self.cut_ns: dict[str, int] = {}  # stream ("" = all) -> when ingest took the cancel
        self.paused = False
        self.player: Player | None = None
        self.info: OpenInfo | None = None
        self._idle_since: float | None = None
        self._underflows_seen = 0
        self._recovering = False
        self.counters.update(underruns=0, device_underflows=0, played=0)
        self.mode = "wav"
        self.volume = self.s.volume
        self.s = PlaybackSettings.from_section(self.config.section("playback"))
        self.volume = self.s.volume
        self.output: AudioOutput = SoundDeviceOutput(
            self.s.device, self.s.latency, self.s.block_ms, self.s.rate_hz
        )
        if self.s.sink == "wav":
            self.event(Kind.SINK, sink="wav", folder=str(self.sink.folder), reason="configured")
            return
        try:
            device = self.output.probe()
        except AudioDeviceError as exc:
            self._go_wav(str(exc))
            return
        self.mode = "device"
        self.event(Kind.SINK, sink="device", device=device)
        log.info("I playback: playing through %r", device)

    def handle(self, msg: Message) -> Iterable[Message]:
        if not isinstance(msg, AudioChunk):
            self.event(Kind.IGNORED, msg, type=msg.TYPE, reason="playback takes audio only")
            return ()
        return self._chunk(msg)

    def on_control(self, msg: ControlMessage) -> Iterable[Message]:
        if isinstance(msg, Cancel):
            self._cancel(msg)
        elif isinstance(msg, GivenUp):
            for key in [k for k in self.held if k[:2] == (msg.stream, msg.seq)]:
                self._drop(key, f"given up by ingest: {msg.reason}")
            self.order.given_up(msg.stream, msg.seq)
            self.event(Kind.GIVEN_UP, None, stream=msg.stream, seq=msg.seq, reason=msg.reason)
            self._tell_passed()
            if self.held and not (self.mode == "wav" and self.paused):
                return list(self._send_out(self.mode))  # what waited for it goes now
        elif isinstance(msg, Flush) and self.player is not None:
            self.player.flush(msg.stream)
        elif isinstance(msg, Pause | Resume):
            self.paused = isinstance(msg, Pause)
            if self.player is not None:
                (self.player.pause if self.paused else self.player.resume)()
            self.event(Kind.PAUSED if self.paused else Kind.RESUMED)
            if not self.paused and self.mode == "wav":
                return list(self._write_ready())
        elif isinstance(msg, Volume):
            self.volume = msg.level
            if self.player is not None:
                self.player.set_volume(msg.level)
            self.event(Kind.VOLUME, level=msg.level)
        return ()

    def tick(self) -> Iterator[Message]:
        now = time.monotonic()
        for h in [
            h for h in self.held.values() if not h.complete() and now - h.touched > self.s.stall_timeout_s
        ]:
            yield self._fail(h, f"no chunk for {self.s.stall_timeout_s:g} s: the sentence never completed")
        if self.held and not (self.mode == "wav" and self.paused):
            yield from self._send_out(self.mode)  # a gap waited for long enough is skipped
        if self.mode != "device" or self.player is None:
            return
        for ev in self.player.events():
            if isinstance(ev, Started):
                self.event(Kind.STARTED, None, **_ids(ev.key), first_sample_wall_ns=ev.first_dac_ns)
            elif isinstance(ev, Done):
                self.acks_due.append(ev)
            elif isinstance(ev, Starved):
                self.counters["underruns"] += 1
                self.event(Kind.UNDERRUN, None, **_ids(ev.key), cause="starved", at_sample=ev.at_sample)
        flows = self.output.underflows()
        if flows > self._underflows_seen:
            self.counters["device_underflows"] += flows - self._underflows_seen
            self.event(Kind.UNDERRUN, cause="device", count=flows - self._underflows_seen, total=flows)
            self._underflows_seen = flows
        failure = self.output.failure() or self._watchdog()
        if failure:
            yield from self._device_lost(failure)
            return
        now_ns = time.time_ns()
        for done in [d for d in self.acks_due if d.last_dac_ns <= now_ns]:
            self.acks_due.remove(done)
            yield from self._played(done)
        if self.player.busy() or self.acks_due or self.held:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.s.idle_close_s:
            self._close_stream("idle")

    def close(self) -> None:
        if getattr(self, "player", None) is not None:
            self._close_stream("shutdown")

    # ---- chunks in ------------------------------------------------------------------------------
    def _chunk(self, chunk: AudioChunk) -> Iterator[Message]:
        if (chunk.stream, chunk.seq) in self.played:
            self.event(Kind.DUPLICATE, chunk, reason="sentence already played")
            if chunk.last:  # ingest re-sent it: the first ack may have been lost with a crash
                yield Played(
                    stream=chunk.stream,
                    seq=chunk.seq,
                    attempt=chunk.attempt,
                    samples=0,
                    rate_hz=chunk.rate_hz,
                    first_sample_wall_ns=0,
                    last_sample_wall_ns=0,
                    text_en=chunk.text_en,
                )
            return
        if self._was_cancelled(chunk):
            self.event(Kind.DROPPED, chunk, reason="cancelled before it arrived")
            return
        self.max_seq[chunk.stream] = max(chunk.seq, self.max_seq.get(chunk.stream, -1))
        key = (chunk.stream, chunk.seq, chunk.attempt)
        h = self.held.get(key)
        if h is None:
            h = self.held[key] = _Held(chunk, time.time_ns(), time.monotonic_ns())
            for k in [
                k for k, o in self.held.items() if k[:2] == key[:2] and k[2] < key[2] and not o.complete()
            ]:
                h.out = h.out or self.held[k].out  # the newer attempt takes its place in the order
                self._drop(k, "superseded by a later attempt")  # the runtime drops its remaining chunks
        elif chunk.index in h.chunks:
            self.event(Kind.DUPLICATE, chunk, reason=f"chunk {chunk.index} came twice")
            return
        last = chunk.index if chunk.last else h.last_index
        beyond = [i for i in (*h.chunks, chunk.index) if last is not None and i > last]
        if (chunk.last and h.last_index is not None) or beyond:  # well formed, but not of this sentence
            said = f"chunk {chunk.index}{' (last)' if chunk.last else ''}"
            self.counters["dropped"] += 1
            self.event(Kind.DROPPED, chunk, reason=f"{said} contradicts the sentence's chunks so far")
            return
        first = h.first
        if (chunk.rate_hz, chunk.sample_format, chunk.channels) != (
            first.rate_hz,
            first.sample_format,
            first.channels,
        ):
            got = f"{chunk.rate_hz} Hz {chunk.sample_format} x{chunk.channels}"
            had = f"{first.rate_hz} Hz {first.sample_format} x{first.channels}"
            yield self._fail(
                h, f"mixed formats in one sentence: chunk {chunk.index} is {got}, the first was {had}"
            )
            return
        h.chunks[chunk.index] = chunk
        h.arrivals[chunk.index] = time.time_ns()
        h.touched = time.monotonic()
        if chunk.last:
            h.last_index = chunk.index
        if len(self.held) > MAX_PENDING_SENTENCES:
            yield self._fail(next(iter(self.held.values())), "too many sentences waiting for their chunks")
        if self.mode == "device":
            yield from self._feed(h) if h.out else self._send_out("device")
        elif h.complete() and not self.paused:
            yield from self._write_ready()

    def _feed(self, h: _Held) -> Iterator[Message]:
        """Hand the player `h`'s place and every chunk of it next in chunk order (opening the stream
        if needed). Only for a sentence whose turn came: the player plays what it holds."""
        if self.player is None:
            try:
                self._open(h.first.rate_hz)
            except AudioDeviceError as exc:
                if self._recovering:  # the device came back from a rescan but still will not open
                    yield from self._fallback(str(exc))
                else:
                    yield from self._device_lost(str(exc))
                return
        assert self.player is not None and self.info is not None
        self.player.enqueue(h.key)
        while h.fed in h.chunks:
            chunk = h.chunks[h.fed]
            pcm = mono_f32(chunk)
            if chunk.rate_hz != self.info.rate_hz:
                h.resampler = h.resampler or Resampler(chunk.rate_hz, self.info.rate_hz)
                pcm = h.resampler(pcm, last=chunk.last)
            self.player.add(h.key, pcm, chunk.index, chunk.last, h.arrivals[chunk.index])
            h.fed += 1

    # ---- the device -------------------------------------------------------------------------------
    def _open(self, rate_hz: int) -> None:
        self.player = None
        info = self.output.open(rate_hz, self._render)
        s = self.s
        self.player = Player(
            PlayerSettings(
                rate_hz=info.rate_hz,
                jitter_ms=s.jitter_ms,
                fade_ms=s.fade_ms,
                preroll_ms=max(s.preroll_ms, 2000 * info.latency_s),  # the device buffer sees silence first
                policy=s.policy,
                turn_hold_s=s.turn_hold_s,
                cue=s.cue == "tone",
            ),
            volume=self.volume,
            paused=self.paused,
        )
        self.info = info
        self._idle_since = None
        self.event(
            Kind.STREAM_OPEN,
            device=info.device,
            rate_hz=info.rate_hz,
            channels=info.channels,
            latency_s=info.latency_s,
            blocksize=info.blocksize,
            resampled_from=rate_hz if rate_hz != info.rate_hz else 0,
        )
        log.info(
            "I playback: stream open on %r at %d Hz, output latency %.1f ms",
            info.device,
            info.rate_hz,
            info.latency_s * 1000,
        )

    def _render(self, frames: int, dac_wall_ns: int) -> np.ndarray:
        player = self.player
        return np.zeros(frames, np.float32) if player is None else player.render(frames, dac_wall_ns)

    def _close_stream(self, why: str) -> None:
        self.output.close()
        self.player = None
        self.event(Kind.STREAM_CLOSED, reason=why)

    def _watchdog(self) -> str | None:
        last = getattr(self.output, "last_callback_mono", None)
        if isinstance(last, float) and last and time.monotonic() - last > self.s.device_timeout_s:
            return f"no audio callback for {self.s.device_timeout_s:g} s"
        return None

    def _device_lost(self, reason: str) -> Iterator[Message]:
        """Reopen after a rescan, handing the new player every sentence the old one had, from its start;
        else fall back to WAVs."""
        self.event(Kind.DEVICE_LOST, reason=reason, held=len(self.held))
        log.warning("W playback: audio device lost (%s)", reason)
        self.output.close()
        self.player = None
        self.acks_due.clear()  # their last samples may never have left: they are played again
        done = threading.Event()
        errors: list[str] = []

        def scan() -> None:
            try:
                rescan()
                self.output.probe()
            except Exception as exc:
                errors.append(str(exc))
            done.set()

        threading.Thread(target=scan, daemon=True).start()
        if not done.wait(RESCAN_TIMEOUT_S) or errors:
            yield from self._fallback(errors[0] if errors else "PortAudio did not come back from a rescan")
            return
        self._recovering = True
        try:
            for h in [h for h in self.held.values() if h.out]:
                h.fed, h.resampler = 0, None
                yield from self._feed(h)
                if self.mode != "device":
                    return
        finally:
            self._recovering = False
        self.event(Kind.REOPENED, held=len(self.held))

    def _fallback(self, reason: str) -> Iterator[Message]:
        """No usable device: say so once, then every held sentence becomes a WAV file."""
        self._go_wav(reason)
        if not self.paused:
            yield from self._write_ready()

    def _go_wav(self, reason: str) -> None:
        self.mode = "wav"
        self.player = None
        for h in self.held.values():
            if h.out:  # handed to a player that is gone: each is written as a WAV in its turn instead
                h.out = False
                self.order.rewind(h.first.stream, h.first.seq)
        self.event(Kind.NO_AUDIO_DEVICE, reason=reason, sink="wav", folder=str(self.sink.folder))
        self.event(Kind.SINK, sink="wav", folder=str(self.sink.folder), reason=reason)
        log.warning(
            "W playback: no usable audio device (%s); writing WAVs to %s instead", reason, self.sink.folder
        )

    # ---- sentences out ------------------------------------------------------------------------------
    def _write_ready(self) -> Iterator[Message]:
        yield from self._send_out("wav")

    def _send_out(self, mode: str) -> Iterator[Message]:
        """Send out every sentence whose turn it is by the rule (module docstring): WAV writes whole
        ones (waiting from their last chunk); the device takes one from its first chunk."""
        whole = mode == "wav"
        while self.mode == mode:
            taken = {h.key[:2] for h in self.held.values() if h.out}  # one attempt of a sentence goes
            waiting = [
                h
                for h in self.held.values()
                if not h.out
                and h.key[:2] not in taken
                and (h.complete() or not (whole or self.order.late(h.first.stream, h.first.seq)))
            ]  # a late one is failed once whole, not once per chunk
            moved = False
            for stream, h in lowest_per_stream(waiting, lambda h: h.key[:2]).items():
                since = h.touched if whole else h.arrived_mono_ns / 1e9
                d = self.order.decide(stream, h.first.seq, since)
                if d.turn is Turn.WAIT:
                    continue
                moved = True
                if d.turn is Turn.LATE:
                    yield self._fail(h, d.reason)
                    break
                if d.skipped:
                    gap = d.skipped
                    self.event(
                        Kind.SKIPPED,
                        None,
                        stream=stream,
                        seq=gap.start,
                        missing=list(gap[:50]),
                        reason=d.reason,
                    )
                self.order.went_out(stream, h.first.seq)
                self._tell_passed()
                h.out = True
                yield from self._write(h) if whole else self._feed(h)
                break
            if not moved:
                return

    def _tell_passed(self) -> None:
        for stream, seq in self.order.take_passed():
            self.event(Kind.SKIPPED, None, stream=stream, seq=seq, missing=[seq], reason="given up by ingest")

    def _write(self, h: _Held) -> Iterator[Message]:
        pcm = h.pcm()
        first_ns = time.time_ns()
        try:
            path = self.sink.write(h.first.stream, h.first.seq, h.first.attempt, pcm, h.first.rate_hz)
        except (OSError, sf.LibsndfileError) as exc:  # a full disk among them: the sentence fails, we go on
            yield self._fail(h, f"cannot write the WAV: {exc}")
            return
        yield self._ack(h, first_ns, time.time_ns(), str(path), {"rms": _rms(pcm)})

    def _played(self, done: Done) -> Iterator[Message]:
        h = self.held.get(done.key)
        if h is None:  # cancelled while its last samples were going out
            return
        wav = ""
        if self.s.keep_wav:
            try:
                wav = str(
                    self.sink.write(h.first.stream, h.first.seq, h.first.attempt, h.pcm(), h.first.rate_hz)
                )
            except (OSError, sf.LibsndfileError) as exc:
                self.event(Kind.ERROR, None, **_ids(h.key), error=f"keep_wav: {exc}", fatal=False)
        lat = [round((dac - arr) / 1e6, 3) for _, arr, dac in sorted(set(done.chunk_out))]
        detail = {"first_chunk_latency_ms": lat[0] if lat else 0.0, "chunk_latency_ms": lat}
        yield self._ack(h, done.first_dac_ns, done.last_dac_ns, wav, detail)

    def _ack(self, h: _Held, first_ns: int, last_ns: int, wav: str, detail: dict[str, Any]) -> Played:
        for key in [k for k in self.held if k[:2] == h.key[:2]]:  # every attempt of this sentence
            del self.held[key]
        self.played.add(h.key[:2])
        self.counters["played"] += 1
        last = h.chunks[max(h.chunks)]
        mine = Stamp("playback", h.arrived_wall_ns, h.arrived_mono_ns, time.time_ns(), time.monotonic_ns())
        played = Played(
            stream=h.first.stream,
            seq=h.first.seq,
            attempt=h.first.attempt,
            samples=h.samples(),
            rate_hz=h.first.rate_hz,
            first_sample_wall_ns=first_ns,
            last_sample_wall_ns=last_ns,
            text_en=last.text_en,
            text_ja=h.text_ja(),
            wav_path=wav,
            stamps=last.stamps,
        )
        stamped = played.with_stamps((*last.stamps, mine))
        try:
            _append_record(self.played_log, stamped)  # type: ignore[arg-type]
        except OSError as exc:  # heard all the same: acked; a restart may not know it was
            self.event(Kind.ERROR, None, **_ids(h.key), error=f"played.jsonl: {exc}", fatal=False)
        self.finished(
            stamped, samples=played.samples, rate_hz=played.rate_hz, wav=wav, sink=self.mode, **detail
        )
        return played

    def _drop(self, key: Key, reason: str) -> None:
        self.held.pop(key, None)
        if self.player is not None:
            self.player.drop(key)
        self.event(Kind.DROPPED, None, **_ids(key), reason=reason)

    def _fail(self, h: _Held, reason: str) -> Failed:
        for key in [k for k in self.held if k == h.key]:
            del self.held[key]
        if h.out:  # it never got out: a retry may take its turn while no later seq went
            self.order.take_back(h.first.stream, h.first.seq)
        if self.player is not None:
            self.player.drop(h.key)
        self.event(Kind.FAILED, h.first, reason=reason)
        return Failed.of(h.first, self.name, reason)

    # ---- cancel ---------------------------------------------------------------------------------------
    def _cancel(self, msg: Cancel) -> None:
        dropped = set(self.player.cancel(msg.stream)) if self.player is not None else set()
        for key in [k for k in self.held if not msg.stream or k[0] == msg.stream]:
            dropped.add(key)
            del self.held[key]
        self.acks_due = [d for d in self.acks_due if d.key in self.held]
        ingest = next((st for st in msg.stamps if st.stage == "ingest"), None)
        self.cut_ns[msg.stream] = ingest.recv_wall_ns if ingest else time.time_ns()
        for stream in [msg.stream] if msg.stream else list(self.max_seq):
            self.cut_seq[stream] = self.max_seq.get(stream, -1)
        self.order.cancel([msg.stream] if msg.stream else [*self.order.streams(), *self.max_seq])
        self.event(Kind.CANCELLED, None, cancel_stream=msg.stream, reason=msg.reason, dropped=len(dropped))

    def _was_cancelled(self, chunk: AudioChunk) -> bool:
        ingest = next((st for st in chunk.stamps if st.stage == "ingest"), None)
        if ingest is not None:
            return any(ingest.sent_wall_ns < self.cut_ns.get(k, 0) for k in (chunk.stream, ""))
        return chunk.seq <= self.cut_seq.get(chunk.stream, -1)


def _ids(key: Key) -> dict[str, Any]:
    return {"stream": key[0], "seq": key[1], "attempt": key[2]}


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


def _append_record(path: Path, played: Played) -> None:
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
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _already_played(path: Path) -> set[tuple[str, int]]:
    """(stream, seq) of every sentence in played.jsonl: a restarted playback plays none twice.
    A line torn by a crash is skipped and closed, so the next record starts on a line of its own."""
    done: set[tuple[str, int]] = set()
    try:
        with open(path, "rb+") as f:
            if f.seek(0, 2) and (f.seek(-1, 2), f.read(1))[1] != b"\n":
                f.write(b"\n")
    except FileNotFoundError:
        pass
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
