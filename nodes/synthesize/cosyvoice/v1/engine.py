"""The Synthesizer on a CosyVoice v1 folder (CosyVoice-300M-SFT): text pieces in, 22 050 Hz chunks out.

What it guarantees, beside what every Synthesizer does (nodes/synthesize/engine.py):
  * voices: each `spk2info.pt` speaker by name (v1's LM takes the speaker vector, so they are real
    voices: 日语男 is a Japanese male), and voices cloned from a prompt recording
    (`stream-tts voices add`, zero-shot or cross-lingual as upstream's v1 front end makes them); a
    name that is neither is UnknownVoice, listing the names there are;
  * v1 reads a whole text before it speaks, so each utterance is the text that is there when it
    starts (nodes/synthesize/cosyvoice/v1/text.py): the first clause alone, then what came meanwhile;
    the audio of one utterance follows the last without a gap, and is streamed out as upstream
    streams v1 (nodes/synthesize/cosyvoice/v1/stream.py), its first chunk `v1_first_hop_tokens` + 20
    speech tokens in;
  * the same deadlines, cancel, NothingToSay and SynthesisError for a model failure mid-utterance
    as the CosyVoice2 engine; device "auto" picks as it does (CUDA, else MPS or the CPU, measured).
    No CUDA graphs: v1 runs eager everywhere, and takes no instruct text (that is the -Instruct model).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bus.errors import EngineError, ModelLoadError
from nodes.synthesize.cosyvoice.engine import EngineOptions, VoiceBankEngine, load_on_best_device
from nodes.synthesize.engine import SpeechChunk, TextFeed
from nodes.synthesize.errors import NothingToSay, SynthesisError

HOP_GROWTH = 2  # each later hop is this times the one before, up to v1_hop_tokens


class CosyVoice1Engine(VoiceBankEngine):
    """Load a v1 folder once, then synthesize sentence by sentence."""

    def __init__(self, model_dir: Path, options: EngineOptions | None = None) -> None:
        from nodes.synthesize.cosyvoice.v1.lm import lm_step_ms
        from nodes.synthesize.cosyvoice.v1.load import load_cosyvoice1
        from nodes.synthesize.cosyvoice.voices import VoiceBank

        self.options = opts = options or EngineOptions()
        if opts.instruct:
            raise ModelLoadError(
                "[synthesize] instruct is set, but a CosyVoice v1 SFT model takes no instruct text: "
                "leave it empty, or use CosyVoice2-0.5B"
            )
        if opts.cuda_graphs == "true":
            raise ModelLoadError("cuda_graphs = true: CosyVoice v1 runs without CUDA graphs (set it to auto)")
        self.model, self.device_choice = load_on_best_device(
            Path(model_dir), opts, load_cosyvoice1, lm_step_ms
        )
        self.bank = VoiceBank(
            self.model.spk2info, opts.voices_dir, self.model.fingerprint, self.model.model_dir
        )
        self.sample_rate_hz = self.model.sample_rate
        self.sampler: Any = None  # the LM's sampler (None: the model's own rule); the oracle swaps it
        self.graphs = "off (CosyVoice v1 runs eager)"

    def describe(self) -> dict[str, Any]:
        return {"model": "CosyVoice v1", **super().describe()}

    def encode(self, text: str) -> list[int]:
        return self.model.encode(text)

    def synthesize(
        self, text_pieces: Iterable[str], voice: str = "", deadline_s: float | None = None, speed: float = 1.0
    ) -> Iterator[SpeechChunk]:
        import torch

        from nodes.synthesize.cosyvoice.stream import Clock
        from nodes.synthesize.cosyvoice.v1.text import ClauseSource

        opts = self.options
        feed = text_pieces if isinstance(text_pieces, TextFeed) else None
        clock = Clock(deadline_s or opts.deadline_s, (lambda: feed.cancelled) if feed else (lambda: False))
        v = self.bank.get(voice)
        source = ClauseSource(text_pieces, lambda s: len(self.encode(s)), opts.max_text_tokens, clock)
        text = source.next_text()
        if text is None:
            raise NothingToSay(f"nothing speakable in {''.join(source.texts)[:60]!r}")
        torch.manual_seed(opts.seed)  # sampling and the flow's and vocoder's noise: a retry says the same
        n = 0
        try:
            while text is not None:
                with torch.inference_mode():
                    for chunk in self._utterance(self.encode(text), v, clock, speed):
                        if not chunk.last:
                            if chunk.pcm.size:
                                yield SpeechChunk(chunk.pcm, False, n, chunk.timings)
                            continue
                        if source.at_end():  # known now: this is the sentence's last audio
                            yield SpeechChunk(chunk.pcm, True, n, chunk.timings)
                            return
                        yield SpeechChunk(chunk.pcm, False, n, chunk.timings)  # sent now, not held
                text = source.next_text()  # waits for the next clause, within the deadline
                n += 1
        except EngineError:
            raise
        except (RuntimeError, IndexError, ValueError) as exc:  # torch, inside the LM, flow or vocoder
            why = f"{type(exc).__name__}: {exc}"[:400]
            raise SynthesisError(f"the model failed mid-utterance ({why})") from exc
        yield SpeechChunk(np.zeros(0, dtype=np.float32), True, max(n - 1, 0))  # the text ended after it

    def _prompt(self, v: Any) -> tuple[list[int], list[int]]:
        """(LM prompt text tokens, LM prompt speech tokens) of a voice, as upstream's v1 front end
        gives them: none for a model speaker (SFT) or a cross-lingual voice, the transcript and
        its speech tokens for a zero-shot clone."""
        if v.instruct:
            raise SynthesisError(
                f"voice {v.name!r} has an instruct text, which a CosyVoice v1 SFT model does not take"
            )
        if not v.is_clone or v.cross_lingual:
            return [], []
        speech = [int(t) for t in v.prompt_speech_token.flatten().tolist()]
        if v.prompt_text_tokens is not None:
            return list(v.prompt_text_tokens), speech
        return (self.encode(v.prompt_text) if v.prompt_text else []), speech

    def _utterance(self, text: list[int], v: Any, clock: Any, speed: float = 1.0) -> Iterator[SpeechChunk]:
        import torch

        from nodes.synthesize.cosyvoice.stream import Timings
        from nodes.synthesize.cosyvoice.v1.lm import speech_tokens
        from nodes.synthesize.cosyvoice.v1.stream import TOKEN_OVERLAP, ChunkVocoder, least_hop

        m, opts = self.model, self.options
        timings = Timings()
        prompt_text, prompt_speech = self._prompt(v)
        if v.is_clone:
            flow_token, flow_feat = v.prompt_speech_token, v.prompt_speech_feat
        else:
            flow_token = torch.zeros(1, 0, dtype=torch.int32)
            flow_feat = torch.zeros(1, 0, m.params["mel_bins"])
        vocoder = ChunkVocoder(m, v.embedding, flow_token, flow_feat, timings, speed)
        tokens: list[int] = []
        offset, hop = 0, least_hop(opts.v1_first_hop_tokens, speed, m.params["input_frame_rate"])
        for token in speech_tokens(
            m,
            text,
            prompt_text,
            prompt_speech,
            v.embedding,
            clock,
            timings,
            min_ratio=opts.min_token_text_ratio,
            max_ratio=opts.max_token_text_ratio,
            sampler=self.sampler,
        ):
            tokens.append(token)
            if len(tokens) - offset >= hop + TOKEN_OVERLAP:
                clock.check()
                pcm = vocoder(tokens[offset : offset + hop + TOKEN_OVERLAP], finalize=False)
                offset, hop = offset + hop, min(hop * HOP_GROWTH, max(opts.v1_hop_tokens, hop))
                yield SpeechChunk(pcm, False, timings=timings.take())
        clock.check()
        pcm = vocoder(tokens[offset:], finalize=True) if tokens else np.zeros(0, dtype=np.float32)
        yield SpeechChunk(pcm, True, timings=timings.take())
