"""The two halves of streaming synthesis on the loaded CosyVoice2 modules, run in one thread.

`speech_tokens`: text streamed into the LM. CosyVoice2's LM was trained on "bistream" sequences:
    sos, [5 text tokens, 15 speech tokens] ..., remaining text, task_id, remaining speech, eos
so it can start speaking after 5 text tokens and take more text as it comes. A prompt's text and
speech tokens fill the first groups. Within a group only speech tokens may be sampled; after 15,
the group ends (the "fill" token the model was trained to emit there is implied, never fed) and
the next 5 text tokens go in, waiting for them if the next clause has not arrived. When the text
ends: task_id, then decode until eos within [min, max] x the text length. Decoding is sampled by
the model's own rule (ras_sampling, run as tensor ops: nodes/cosyvoice_sampling) under a fixed
seed, so a retry says the same thing.

`ChunkVocoder`: tokens to audio chunk by chunk. Each chunk runs the causal flow over all tokens so
far plus `pre_lookahead_len` tokens of right context (the package's flow keeps no cache: it
recomputes the prefix under chunk masks), keeps the new mel frames, and vocodes them with HiFT
after the previous chunk's last 8 mel frames, reusing that stretch's harmonic source (the source
cache) and cross-fading its audio with a Hamming window, so chunk edges do not click.

Every step checks the clock (deadline, cancel): nothing here can wait for ever. Unlike upstream,
no thread is involved, so an exception ends the utterance instead of leaving a loop spinning.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nodes.synthesize.cosyvoice.sampling import sampler_for
from nodes.synthesize.errors import SynthesisCancelled, SynthesisTimeout

HIFT_CACHE_MELS = 8  # mel frames re-vocoded at each chunk edge (upstream's mel_cache_len)
TOP_K = 25  # the `sampling` argument upstream passes to ras_sampling


class Clock:
    """A synthesis deadline plus a cancel flag; `check()` raises when either has fired."""

    def __init__(self, deadline_s: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + deadline_s
        self.deadline_s = deadline_s
        self.cancelled = cancelled

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.cancelled():
            raise SynthesisCancelled("cancelled")
        if time.monotonic() > self.deadline:
            raise SynthesisTimeout(f"deadline of {self.deadline_s:g} s passed")


@dataclass
class Timings:
    """Seconds spent per stage since the last `take()` (what one chunk cost)."""

    lm_s: float = 0.0
    lm_steps: int = 0
    flow_s: float = 0.0
    hift_s: float = 0.0

    def take(self) -> dict[str, float]:
        out = {
            "lm_ms": self.lm_s * 1e3,
            "lm_steps": float(self.lm_steps),
            "flow_ms": self.flow_s * 1e3,
            "hift_ms": self.hift_s * 1e3,
        }
        self.lm_s = self.flow_s = self.hift_s = 0.0
        self.lm_steps = 0
        return out


def autocast_for(model: Any) -> contextlib.AbstractContextManager[Any]:
    """Half-precision modules run under autocast on CUDA, as upstream runs them."""
    if model.device.type == "cuda" and model.dtype != torch.float32:
        return torch.autocast("cuda", dtype=model.dtype)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LmStep:
    """One LM forward over the inputs not yet seen, with the HF KV cache. The bench swaps this for
    a CUDA-graph version; the decoding protocol above it does not change."""

    def __init__(self, model: Any) -> None:
        self.llm = model.llm
        self.device = model.device

    def __call__(self, x: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        past = 0 if cache is None else int(cache.get_seq_length())
        masks = torch.ones((1, 1, past + x.shape[1]), dtype=torch.bool, device=self.device)
        y, cache = self.llm.llm.forward_one_step(x, masks=masks, cache=cache)
        return self.llm.llm_decoder(y[:, -1]).float().log_softmax(dim=-1)[0], cache


def speech_tokens(
    model: Any,
    text: Iterator[list[int]],
    prompt_text: list[int],
    prompt_speech: list[int],
    clock: Clock,
    timings: Timings,
    *,
    min_ratio: float = 2.0,
    max_ratio: float = 20.0,
    max_tokens: int = 10**9,
    step: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]] | None = None,
    sampler: Callable[[torch.Tensor, list[int]], int] | None = None,
) -> Iterator[int]:
    """Speech tokens as the LM makes them, pulling text token lists from `text` when it needs more.
    `sampler` defaults to the model's own rule without its host syncs (nodes/cosyvoice_sampling)."""
    llm, dev = model.llm, model.device
    forward = step or LmStep(model)
    draw = sampler or sampler_for(llm, TOP_K)
    eos = int(llm.speech_token_size)
    n_text, n_speech = int(llm.mix_ratio[0]), int(llm.mix_ratio[1])
    embed_text = llm.llm.model.model.embed_tokens

    def text_emb(ids: list[int]) -> torch.Tensor:
        return embed_text(torch.tensor([ids], dtype=torch.long, device=dev))

    def speech_emb(ids: list[int]) -> torch.Tensor:
        return llm.speech_embedding(torch.tensor([ids], dtype=torch.long, device=dev))

    pending: list[torch.Tensor] = [llm.llm_embedding.weight[llm.sos_eos].reshape(1, 1, -1)]
    buf, prompt_left = list(prompt_text), list(prompt_speech)
    out: list[int] = []
    n_tts = 0
    cache: Any = None

    def pull() -> bool:
        nonlocal n_tts
        for ids in text:
            if ids:
                buf.extend(ids)
                n_tts += len(ids)
                return True
        return False

    def sample(allow_eos: bool) -> int:
        nonlocal cache, pending
        clock.check()
        t0 = time.perf_counter()
        logp, cache = forward(torch.cat(pending, dim=1), cache)
        logp[eos + 1 :] = -float("inf")  # fill / task ids are placed by the protocol, never sampled
        if not allow_eos:
            logp[eos] = -float("inf")
        token = draw(logp, out)
        timings.lm_s += time.perf_counter() - t0
        timings.lm_steps += 1
        pending = [] if token == eos else [speech_emb([token])]
        return token

    while True:  # interleaved groups while the text lasts
        while len(buf) < n_text and pull():
            pass
        if len(buf) < n_text:
            break
        pending.append(text_emb(buf[:n_text]))
        del buf[:n_text]
        k = min(n_speech, len(prompt_left))
        if k:
            pending.append(speech_emb(prompt_left[:k]))
            del prompt_left[:k]
        for _ in range(n_speech - k):
            if len(out) >= max_tokens:
                return
            token = sample(allow_eos=False)
            out.append(token)
            yield token
    if buf:
        pending.append(text_emb(buf))
    pending.append(llm.llm_embedding.weight[llm.task_id].reshape(1, 1, -1))
    if prompt_left:
        pending.append(speech_emb(prompt_left))
    min_len, max_len = int(n_tts * min_ratio), min(int(n_tts * max_ratio), max_tokens)
    while len(out) < max_len:
        token = sample(allow_eos=len(out) >= min_len)
        if token == eos:
            return
        out.append(token)
        yield token


class ChunkVocoder:
    """Speech tokens -> float32 audio, one chunk at a time, for one utterance."""

    def __init__(
        self,
        model: Any,
        embedding: torch.Tensor,
        prompt_token: torch.Tensor,
        prompt_feat: torch.Tensor,
        timings: Timings,
        vocode: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        speed: float = 1.0,
    ) -> None:
        self.model = model
        self.speed = speed  # the flow's mel is stretched by 1/speed before the vocoder: pitch stays
        self.vocode = vocode or (
            lambda mel, source: model.hift.inference(speech_feat=mel, cache_source=source)
        )
        dev = model.device
        self.embedding = embedding.to(dev).float()
        self.prompt_token = prompt_token.to(dev).int()
        self.prompt_feat = prompt_feat.to(dev).float()
        self.timings = timings
        self.ratio = int(model.flow.token_mel_ratio)
        spm = model.samples_per_mel
        self.cache_samples = HIFT_CACHE_MELS * spm
        self.window = torch.from_numpy(np.hamming(2 * self.cache_samples).astype(np.float32)).to(dev)
        self.cache: dict[str, torch.Tensor] | None = None

    def __call__(self, tokens: list[int], offset: int, finalize: bool) -> np.ndarray:
        """Audio for tokens[offset:] (all but the lookahead unless `finalize`), minus the tail kept
        for the next chunk's cross-fade."""
        m, dev = self.model, self.model.device
        mel = torch.zeros(1, m.params["mel_bins"], 0, device=dev)
        if tokens:
            t0 = time.perf_counter()
            tok = torch.tensor([tokens], dtype=torch.int32, device=dev)
            with autocast_for(m):
                feat, _ = m.flow.inference(
                    token=tok,
                    token_len=torch.tensor([tok.shape[1]], dtype=torch.int32, device=dev),
                    prompt_token=self.prompt_token,
                    prompt_token_len=torch.tensor(
                        [self.prompt_token.shape[1]], dtype=torch.int32, device=dev
                    ),
                    prompt_feat=self.prompt_feat,
                    prompt_feat_len=torch.tensor([self.prompt_feat.shape[1]], dtype=torch.int32, device=dev),
                    embedding=self.embedding,
                    streaming=not finalize,  # the last chunk sees the whole utterance, as upstream
                    finalize=finalize,
                )
            mel = feat[:, :, offset * self.ratio :].float()
            if self.speed != 1.0 and mel.shape[2]:  # upstream's duration control: the mel, resampled
                frames = max(1, round(mel.shape[2] / self.speed))
                mel = torch.nn.functional.interpolate(mel, size=frames, mode="linear")
            _sync(dev)
            self.timings.flow_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        source = torch.zeros(1, 1, 0, device=dev)
        if self.cache is not None:
            mel = torch.cat([self.cache["mel"], mel], dim=2)
            source = self.cache["source"]
        if mel.shape[2] == 0:
            return np.zeros(0, dtype=np.float32)
        speech, src = self.vocode(mel, source)
        if self.cache is not None:
            n = self.cache_samples
            head = speech[:, :n] * self.window[:n] + self.cache["speech"][:, -n:] * self.window[n:]
            speech = torch.cat([head, speech[:, n:]], dim=1)
        if not finalize:
            self.cache = {
                "mel": mel[:, :, -HIFT_CACHE_MELS:],
                "source": src[:, :, -self.cache_samples :],
                "speech": speech[:, -self.cache_samples :],
            }
            speech = speech[:, : -self.cache_samples]
        out = speech[0].float().cpu().numpy()
        self.timings.hift_s += time.perf_counter() - t0
        return np.ascontiguousarray(out, dtype=np.float32)
