"""The synthesize engine: Japanese text pieces in, float32 PCM chunks out, on CosyVoice2's modules.
(A CosyVoice v1 folder runs on nodes/synthesize/cosyvoice/v1/engine.py instead; the node gets either from
nodes/synthesize/cosyvoice/factory.py, which reads the folder.)

The seam is `Synthesizer`: plain types only, so the node never sees torch and a test can put a
function behind it. `CosyVoiceEngine` is the real one: it loads a model folder
(nodes/synthesize/cosyvoice/load.py), resolves a voice (nodes/synthesize/cosyvoice/voices.py) and streams
(nodes/synthesize/cosyvoice/stream.py). What it guarantees:
  * the pieces of one sentence become ONE utterance, text streamed into the LM as it arrives, so
    the first chunk never waits for the last clause; long text is split into several utterances
    (at most `max_text_tokens` each, at punctuation) whose audio follows on without a gap;
  * the first chunk comes after `first_hop_tokens` speech tokens (+ the flow's lookahead), later
    chunks every `hop_tokens`: a smaller first hop gives earlier audio;
  * every synthesis has a deadline (`deadline_s`, waiting for text included) and can be
    cancelled through its TextFeed; it raises instead of hanging;
  * text with nothing speakable raises NothingToSay before the model runs; torch raising inside
    the LM, flow or vocoder mid-utterance (a token id past a table, an op a device lacks) is a
    SynthesisError for that sentence, and the engine takes the next;
  * device "auto": CUDA, else MPS or the CPU, whichever runs this model's LM faster, measured once
    and remembered (nodes/synthesize/cosyvoice/device.py);
  * on CUDA (`cuda_graphs`), the LM step, the flow estimator and the vocoder's streaming shapes
    replay CUDA graphs captured at load (nodes/synthesize/cosyvoice/lm_graph.py, cosyvoice_flow_graph.py,
    cosyvoice_hift_graph.py): eager PyTorch is launch bound there (bench/results/synth-gpu.md).
    The flow's blocks and the LM's norms and MLPs are torch.compile'd before the capture
    (`compile_flow`, `compile_lm`; undone if the compiler fails). Elsewhere nothing changes.
"""

from __future__ import annotations

import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.errors import EngineError, ModelLoadError
from nodes.synthesize.engine import SpeechChunk, Synthesizer, TextFeed
from nodes.synthesize.errors import NothingToSay, SynthesisError

if TYPE_CHECKING:
    from nodes.synthesize.cosyvoice.device import DeviceChoice
    from nodes.synthesize.cosyvoice.load import CosyVoice2

LM_GRAPH_MAX_LEN = 4096  # LM static cache (prompt + 80 text tokens + 20x speech tokens fit)
FLOW_WARM_TOKENS = 200  # flow graphs captured at load for chunks up to this many tokens (8 s)
SPLIT_AFTER = "。！？!?．.\n；;、，,：: "  # where a too-long text may be cut, strongest first
INSTRUCT_END = "<|endofprompt|>"


@dataclass(frozen=True)
class EngineOptions:
    """[synthesize] settings the engine reads (see nodes/synthesize/node.py for the config keys)."""

    device: str = "auto"
    dtype: str = "auto"
    first_hop_tokens: int = 12  # with translate's hold: the later chunks' lead kept (ttfa-e2e-h200.md, run 5)
    hop_tokens: int = 25
    deadline_s: float = 60.0
    max_text_tokens: int = 80
    min_token_text_ratio: float = 2.0  # speech tokens per text token, at least (upstream's bounds)
    max_token_text_ratio: float = 20.0  # and at most: an utterance that never says eos ends here
    instruct: str = ""
    seed: int = 0
    voices_dir: Path | None = None
    state_dir: Path | None = None  # where the measured device verdict is kept (the data dir)
    cuda_graphs: str = "auto"  # "auto" (on when the device is CUDA), "true", "false"
    graph_flow: bool = True  # with cuda_graphs on: the flow estimator too, not only the LM step
    graph_hift: bool = True  # with cuda_graphs on: the vocoder's first and steady chunk shapes too
    # with the graphs: torch.compile the flow decoder's blocks / the LM's norms and MLPs before
    # the capture (TTFA 257 -> 219 ms on an H200, load +5-20 s: bench/results/ttfa-e2e-h200.md, run 6)
    compile_flow: bool = True
    compile_lm: bool = True
    # CosyVoice v1 (nodes/synthesize/cosyvoice/v1/): its first chunk after this many speech tokens + the
    # 20 its flow overlaps (21, the least its flow allows: first audio after 41 tokens), each later
    # hop twice the one before, up to v1_hop_tokens (upstream's hop)
    v1_first_hop_tokens: int = 21
    v1_hop_tokens: int = 100

    def __post_init__(self) -> None:
        if self.first_hop_tokens < 5 or self.hop_tokens < 5:
            # a chunk must cover more than the 8 mel frames (4 tokens) kept for the cross-fade
            raise ValueError("first_hop_tokens and hop_tokens must be at least 5")
        if not 0 < self.min_token_text_ratio <= self.max_token_text_ratio:
            raise ValueError("the ratios must satisfy 0 < min_token_text_ratio <= max_token_text_ratio")
        if self.deadline_s <= 0 or self.max_text_tokens < 5:
            raise ValueError("deadline_s must be > 0 and max_text_tokens >= 5")
        if self.cuda_graphs not in ("auto", "true", "false"):
            raise ValueError('cuda_graphs must be "auto", true or false')
        if min(self.v1_first_hop_tokens, self.v1_hop_tokens) < 21:
            # v1's flow overlaps chunks by 20 tokens and needs more than 40 in a chunk (v1/stream.py)
            raise ValueError("v1_first_hop_tokens and v1_hop_tokens must be at least 21")


def speakable(text: str) -> bool:
    """Has a letter or digit of any script (kana and kanji included): not only symbols/space."""
    return any(c.isalnum() for c in text)


def text_script(text: str) -> str:
    """A coarse language guess from the script: "ja" (kana), "cjk" (kanji only: Japanese or
    Chinese), "ko", "latin", "other" or "" (nothing speakable)."""
    names = [unicodedata.name(c, "") for c in text if c.isalnum()]
    if not names:
        return ""
    if any(n.startswith(("HIRAGANA", "KATAKANA")) for n in names):
        return "ja"
    if any(n.startswith("CJK UNIFIED") for n in names):
        return "cjk"
    if any(n.startswith("HANGUL") for n in names):
        return "ko"
    if any(n.startswith("LATIN") for n in names):
        return "latin"
    return "other"


def split_text(text: str, count: Callable[[str], int], max_tokens: int) -> list[str]:
    """`text` cut into parts of at most `max_tokens` tokens, after punctuation where possible."""
    if count(text) <= max_tokens:
        return [text]
    for mark in SPLIT_AFTER:
        if mark in text.rstrip(mark):
            segments = [s + mark for s in text.split(mark)]
            segments[-1] = segments[-1][: -len(mark)]
            parts: list[str] = []
            for seg in (s for s in segments if s):
                if parts and count(parts[-1] + seg) <= max_tokens:
                    parts[-1] += seg
                else:
                    parts.extend(split_text(seg, count, max_tokens))
            return parts
    parts = [""]  # no punctuation at all: cut between characters
    for ch in text:
        if parts[-1] and count(parts[-1] + ch) > max_tokens:
            parts.append("")
        parts[-1] += ch
    return parts


class TextSource:
    """Text pieces in, token lists out, one utterance at a time (see `utterance`)."""

    def __init__(
        self,
        pieces: Iterable[str],
        encode: Callable[[str], list[int]],
        max_tokens: int,
        wait_s: Callable[[], float],
    ) -> None:
        self._pieces = pieces if isinstance(pieces, TextFeed) else iter(pieces)
        self._encode = encode
        self._max = max_tokens
        self._wait_s = wait_s
        self._carry: deque[tuple[str, list[int]]] = deque()
        self._done = False
        self.texts: list[str] = []

    def _pull(self) -> bool:
        if self._done:
            return False
        if isinstance(self._pieces, TextFeed):
            piece = self._pieces.get(self._wait_s())
        else:
            piece = next(self._pieces, None)
        if piece is None:
            self._done = True
            return False
        piece = piece.replace("\n", " ")
        if piece.strip():
            self.texts.append(piece)
            for part in split_text(piece, lambda s: len(self._encode(s)), self._max):
                self._carry.append((part, self._encode(part)))
        return True

    def has_speech(self) -> bool:
        """True once speakable text is waiting; False when the text ended without any more.
        Waits for pieces (within the deadline) until it can tell."""
        while not any(speakable(t) for t, _ in self._carry):
            if not self._pull():
                return False
        return True

    def utterance(self) -> Iterator[list[int]]:
        """Token lists for one utterance: ends with the text, or before the piece that would take
        it past `max_tokens` (that piece opens the next utterance)."""
        used = 0
        while self._carry or self._pull():
            if not self._carry:
                continue
            _, ids = self._carry[0]
            if used and used + len(ids) > self._max:
                return
            self._carry.popleft()
            used += len(ids)
            yield ids


def load_on_best_device(
    model_dir: Path,
    opts: EngineOptions,
    load: Callable[[Path, str, str], Any] | None = None,
    probe: Callable[[Any], float] | None = None,
) -> tuple[Any, DeviceChoice]:
    """The loaded model on the device `opts.device` names or, for "auto" with MPS there, on the
    faster of MPS and the CPU by a measured LM workload (nodes/synthesize/cosyvoice/device.py); and how
    that device was chosen (the synthesize node reports it on the tap). `load` and `probe` default
    to CosyVoice2's loader and LM step timing; the v1 engine passes its own."""
    from nodes.synthesize.cosyvoice.device import (
        DeviceChoice,
        candidates,
        choose,
        lm_step_ms,
        move,
        verdict_key,
    )
    from nodes.synthesize.cosyvoice.load import load_cosyvoice2

    loader = load or load_cosyvoice2
    timing = probe or lm_step_ms
    devices = candidates(opts.device)
    if len(devices) == 1:
        model = loader(model_dir, devices[0], opts.dtype)
        return model, DeviceChoice(model.device.type, "config" if opts.device != "auto" else "only candidate")
    model = loader(model_dir, "cpu", opts.dtype)
    choice = choose(devices, lambda d: timing(move(model, d)), opts.state_dir, verdict_key(model))
    move(model, choice.device)
    return model, choice


class VoiceBankEngine(Synthesizer):
    """What every CosyVoice engine shares once its folder is loaded: the model on its device, its
    voice bank, and how it describes itself on the tap. Each version's engine sets these in its
    own __init__ (load_on_best_device, VoiceBank) and does the synthesis."""

    model: Any
    bank: Any  # voices.VoiceBank
    device_choice: DeviceChoice
    sample_rate_hz: int
    graphs: str = "off"  # what replays CUDA graphs, for the `engine` event

    @property
    def device_type(self) -> str:
        return str(self.model.device.type)

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.model.device),
            "dtype": str(self.model.dtype),
            "rate_hz": self.sample_rate_hz,
            "voices": self.voices(),
            "cuda_graphs": self.graphs,
            "device_choice": self.device_choice.as_event(),
        }

    def describe_voice(self, name: str) -> dict[str, Any]:
        v = self.bank.get(name)
        return {"name": v.name, "source": v.source, "cross_lingual": v.cross_lingual}

    def voices(self) -> list[str]:
        return list(self.bank.names())

    def close(self) -> None:
        self.model = None


class CosyVoiceEngine(VoiceBankEngine):
    """The Synthesizer on a CosyVoice2 model folder (load once, then synthesize sentence by sentence)."""

    def __init__(self, model_dir: Path, options: EngineOptions | None = None) -> None:
        from nodes.synthesize.cosyvoice.voices import VoiceBank

        self.options = options or EngineOptions()
        self.model: CosyVoice2
        self.model, self.device_choice = load_on_best_device(Path(model_dir), self.options)
        self.bank = VoiceBank(  # model_dir: where the default voice's prompt is (voices.py)
            self.model.spk2info, self.options.voices_dir, self.model.fingerprint, self.model.model_dir
        )
        self.sample_rate_hz = self.model.sample_rate
        self._step: Any = None  # the LM step of speech_tokens (None: the eager LmStep)
        self._vocode: Any = None  # ChunkVocoder's HiFT call (None: hift.inference, eager)
        self.sampler: Any = None  # speech_tokens' sampler (None: cosyvoice_sampling's; benches swap it)
        self.graphs = "off"  # e.g. "lm(compiled)+flow(compiled)+hift", "off", "failed: why" (auto: eager)
        want = self.options.cuda_graphs
        if want == "true" and self.model.device.type != "cuda":
            raise ModelLoadError(f"cuda_graphs = true needs a CUDA device, not {self.model.device}")
        if want == "true" or (want == "auto" and self.model.device.type == "cuda"):
            self._build_graphs()

    def _build_graphs(self) -> None:
        """Capture the graphs now (seconds; half a minute more with torch.compile), not
        mid-sentence. A compile that fails is undone and the graphs are captured without it."""
        m, opts = self.model, self.options
        flow_inner = m.flow.decoder.estimator
        note = ""
        try:
            try:
                built = self._capture_graphs(opts.compile_flow, opts.compile_lm)
            except (RuntimeError, ValueError) as exc:
                if not (opts.compile_flow or opts.compile_lm):
                    raise
                m.flow.decoder.estimator = flow_inner  # the graph classes uncompile what they compiled
                note = f" (torch.compile failed, graphs without it: {type(exc).__name__}: {exc})"[:300]
                built = self._capture_graphs(False, False)
        except (RuntimeError, ValueError) as exc:  # a capture CUDA refuses: eager, or an error if asked
            m.flow.decoder.estimator = flow_inner
            if opts.cuda_graphs == "true":
                raise ModelLoadError(f"CUDA graph capture failed: {exc}") from exc
            self.graphs = f"failed: {type(exc).__name__}: {exc}"[:300]
            return
        self._step, self._vocode, graphed = built
        self.graphs = graphed + note

    def _capture_graphs(self, compile_flow: bool, compile_lm: bool) -> tuple[Any, Any, str]:
        """(LM step, vocoder call, what is graphed): the LM step's, the flow estimator's and the
        vocoder's streaming shapes' graphs, each torch.compile'd first where asked."""
        import torch

        from nodes.synthesize.cosyvoice.flow_graph import install
        from nodes.synthesize.cosyvoice.hift_graph import GraphHift, model_streaming_shapes
        from nodes.synthesize.cosyvoice.lm_graph import GraphLmStep
        from nodes.synthesize.cosyvoice.load import hift_capturable
        from nodes.synthesize.cosyvoice.stream import autocast_for

        m, opts = self.model, self.options
        step = GraphLmStep(m, max_len=LM_GRAPH_MAX_LEN, compile=compile_lm)
        step.warm()
        graphed = "lm(compiled)" if compile_lm else "lm"
        if opts.graph_flow:
            est = install(m.flow, compile=compile_flow)
            ratio = int(m.params["token_mel_ratio"])
            if est.bucket > 1:  # every padded length up to the limit (finalize chunks vary)
                mels = list(range(est.bucket, FLOW_WARM_TOKENS * ratio + 1, est.bucket))
            else:  # exact lengths only: the default voice's streaming chunks
                hops = range(opts.first_hop_tokens, FLOW_WARM_TOKENS + 1, opts.hop_tokens)
                mels = [h * ratio for h in hops]
            with torch.inference_mode(), autocast_for(m):
                est.warm(mels, m.dtype, (True, False))
            graphed += "+flow(compiled)" if est.compiled else "+flow"
        vocode: Any = None
        if opts.graph_hift and hift_capturable(m.hift):
            vocode = GraphHift(m.hift)
            vocode.warm(model_streaming_shapes(m, opts.first_hop_tokens, opts.hop_tokens))
            graphed += "+hift"
        return step, vocode, graphed

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self.model.tokenizer.encode(text)]

    def synthesize(
        self, text_pieces: Iterable[str], voice: str = "", deadline_s: float | None = None, speed: float = 1.0
    ) -> Iterator[SpeechChunk]:
        import torch

        from nodes.synthesize.cosyvoice.stream import Clock

        opts = self.options
        feed = text_pieces if isinstance(text_pieces, TextFeed) else None
        clock = Clock(deadline_s or opts.deadline_s, (lambda: feed.cancelled) if feed else (lambda: False))
        v = self.bank.get(voice)
        source = TextSource(text_pieces, self.encode, opts.max_text_tokens, clock.remaining)
        if not source.has_speech():
            raise NothingToSay(f"nothing speakable in {''.join(source.texts)[:60]!r}")
        torch.manual_seed(opts.seed)  # sampling and the vocoder's noise: a retry says the same
        more, n = True, 0
        try:
            while more:
                with torch.inference_mode():
                    for chunk in self._utterance(source, v, clock, speed):
                        if chunk.last:
                            more = source.has_speech()
                            yield SpeechChunk(chunk.pcm, not more, n, chunk.timings)
                        elif chunk.pcm.size:
                            yield SpeechChunk(chunk.pcm, False, n, chunk.timings)
                n += 1
        except EngineError:
            raise
        except (RuntimeError, IndexError, ValueError) as exc:  # torch, inside the LM, flow or vocoder
            why = f"{type(exc).__name__}: {exc}"[:400]
            raise SynthesisError(f"the model failed mid-utterance ({why})") from exc

    def _prompt(self, v: Any) -> tuple[list[int], list[int]]:
        """(LM prompt text tokens, LM prompt speech tokens) of a voice, instruct applied."""
        instruct = self.options.instruct or v.instruct
        speech = v.prompt_speech_token.flatten().tolist() if v.is_clone else []
        if instruct:
            if not self.model.has_special(INSTRUCT_END):
                raise SynthesisError(
                    "this model takes no instruct text (its tokenizer lacks <|endofprompt|>)"
                )
            return self.encode(instruct + INSTRUCT_END), []  # instruct replaces the spoken prompt in the LM
        if v.cross_lingual:  # upstream's inference_cross_lingual: the prompt's language stays out of the LM
            return [], []
        if v.prompt_text_tokens is not None:
            return list(v.prompt_text_tokens), speech
        return (self.encode(v.prompt_text) if v.prompt_text else []), speech

    def _utterance(self, source: TextSource, v: Any, clock: Any, speed: float = 1.0) -> Iterator[SpeechChunk]:
        import torch

        from nodes.synthesize.cosyvoice.stream import ChunkVocoder, Timings, speech_tokens

        m, opts = self.model, self.options
        timings = Timings()
        prompt_text, prompt_speech = self._prompt(v)
        if v.is_clone:
            flow_token, flow_feat = v.prompt_speech_token, v.prompt_speech_feat
        else:
            flow_token = torch.zeros(1, 0, dtype=torch.int32)
            flow_feat = torch.zeros(1, 0, m.params["mel_bins"])
        vocoder = ChunkVocoder(
            m, v.embedding, flow_token, flow_feat, timings, vocode=self._vocode, speed=speed
        )
        lookahead = m.params["pre_lookahead_len"]
        room = m.params["max_mels"] // m.params["token_mel_ratio"] - int(flow_token.shape[1]) - lookahead
        tokens: list[int] = []
        offset, hop = 0, opts.first_hop_tokens
        with torch.inference_mode():
            for token in speech_tokens(
                m,
                source.utterance(),
                prompt_text,
                prompt_speech,
                clock,
                timings,
                min_ratio=opts.min_token_text_ratio,
                max_ratio=opts.max_token_text_ratio,
                max_tokens=room,
                step=self._step,
                sampler=self.sampler,
            ):
                tokens.append(token)
                if len(tokens) - offset >= hop + lookahead:
                    clock.check()
                    pcm = vocoder(tokens[: offset + hop + lookahead], offset, finalize=False)
                    offset, hop = offset + hop, opts.hop_tokens
                    yield SpeechChunk(pcm, False, timings=timings.take())
            clock.check()
            pcm = vocoder(tokens, offset, finalize=True)
        yield SpeechChunk(pcm, True, timings=timings.take())
