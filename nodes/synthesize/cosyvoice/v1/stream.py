"""CosyVoice v1's speech tokens to audio, one chunk at a time, as upstream streams v1
(cosyvoice/cli/model.py CosyVoiceModel.tts and token2wav with stream=True).

v1's flow is not causal, so a chunk cannot simply be the new tokens. Each chunk runs the flow
over `hop` new tokens plus the next TOKEN_OVERLAP (20) tokens, and the next chunk starts 20 tokens
before its end. Three caches carry one chunk into the next:
  * the flow cache: the noise and the encoder output of the prompt and of the chunk's last 34
    mel frames (the 20 overlap tokens: the length regulator maps a chunk's first and last 20
    tokens to exactly 34 frames once it holds more than 40), so the next chunk starts from the
    same noise and conditioning there;
  * the mel overlap: those 34 frames are held back and cross-faded (a Hamming window) with the
    next chunk's first 34;
  * the vocoder cache: HiFT re-vocodes the previous chunk's last 20 mel frames with their harmonic
    source, and the audio of that stretch is cross-faded (5120 samples), so chunk edges do not click.
The last chunk takes whatever tokens are left and keeps nothing back.

So a chunk needs `hop + 20` tokens, with `hop` > 20: the earliest first chunk comes after 41
tokens (0.82 s of speech at 50 tokens a second).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from nodes.synthesize.cosyvoice.stream import Timings, autocast_for

TOKEN_OVERLAP = 20  # upstream's token_overlap_len; the length regulator and the flow cache assume it
MEL_CACHE = 20  # mel frames HiFT re-vocodes at each chunk edge (upstream's mel_cache_len)
MIN_HOP = TOKEN_OVERLAP + 1  # a chunk of more than 40 tokens, so its ends map to exactly 34 frames


def overlap_mels(input_frame_rate: int, sample_rate: int = 22050, hop: int = 256) -> int:
    """Mel frames of TOKEN_OVERLAP tokens: 34 at 50 tokens a second (upstream's mel_overlap_len)."""
    return int(TOKEN_OVERLAP / input_frame_rate * sample_rate / hop)


def least_hop(hop: int, speed: float, input_frame_rate: int, sample_rate: int = 22050, spm: int = 256) -> int:
    """`hop`, or more if a chunk of it would give the vocoder no more than its 20 cached frames once
    stretched by 1/speed (a fast speed shortens a chunk's mel: the cross-fade needs 20 frames)."""
    overlap = overlap_mels(input_frame_rate, sample_rate, spm)
    while (
        round((int((hop + TOKEN_OVERLAP) / input_frame_rate * sample_rate / spm) - overlap) / speed)
        <= MEL_CACHE
    ):
        hop += 1
    return hop


def _fade(new: torch.Tensor, old: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """`new` with its first len(window)/2 steps cross-faded into `old`'s last (upstream's
    fade_in_out, in float64 as its numpy window makes it)."""
    n = window.shape[0] // 2
    out = new.clone()
    head = new[..., :n].double() * window[:n] + old[..., -n:].double() * window[n:]
    out[..., :n] = head.to(new.dtype)
    return out


class ChunkVocoder:
    """Speech tokens -> float32 audio for one utterance, chunk by chunk (module docstring)."""

    def __init__(
        self,
        model: Any,
        embedding: torch.Tensor,
        prompt_token: torch.Tensor,
        prompt_feat: torch.Tensor,
        timings: Timings,
        speed: float = 1.0,
    ) -> None:
        self.model = model
        self.speed = speed  # each chunk's mel is stretched by 1/speed before the vocoder: pitch stays
        dev = model.device
        self.embedding = embedding.to(dev).float()
        self.prompt_token = prompt_token.to(dev).int()
        self.prompt_feat = prompt_feat.to(dev).float()
        self.timings = timings
        bins = int(model.params["mel_bins"])
        self.overlap = overlap_mels(
            int(model.params["input_frame_rate"]), model.sample_rate, model.samples_per_mel
        )
        self.cache_samples = MEL_CACHE * model.samples_per_mel
        self.mel_window = torch.from_numpy(np.hamming(2 * self.overlap)).to(dev)
        self.speech_window = torch.from_numpy(np.hamming(2 * self.cache_samples)).to(dev)
        self.flow_cache = torch.zeros(1, bins, 0, 2, device=dev)
        self.mel_overlap = torch.zeros(1, bins, 0, device=dev)
        self.hift_cache: dict[str, torch.Tensor] | None = None

    def __call__(self, tokens: list[int], finalize: bool) -> np.ndarray:
        """Audio of these tokens (a chunk's hop plus its 20 overlap tokens, or the rest when
        `finalize`), minus what is held back for the next chunk."""
        m, dev = self.model, self.model.device
        t0 = time.perf_counter()
        tok = torch.tensor([tokens], dtype=torch.int32, device=dev)
        with autocast_for(m):
            mel, self.flow_cache = m.flow.inference(
                token=tok,
                token_len=torch.tensor([tok.shape[1]], dtype=torch.int32, device=dev),
                prompt_token=self.prompt_token,
                prompt_token_len=torch.tensor([self.prompt_token.shape[1]], dtype=torch.int32, device=dev),
                prompt_feat=self.prompt_feat,
                prompt_feat_len=torch.tensor([self.prompt_feat.shape[1]], dtype=torch.int32, device=dev),
                embedding=self.embedding,
                flow_cache=self.flow_cache,
            )
        mel = mel.float()
        if self.mel_overlap.shape[2]:
            mel = _fade(mel, self.mel_overlap, self.mel_window)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        self.timings.flow_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        if not finalize:  # (upstream takes it after prepending the vocoder cache: the same frames)
            self.mel_overlap = mel[:, :, -self.overlap :]
            mel = mel[:, :, : -self.overlap]
        if self.speed != 1.0 and mel.shape[2]:  # upstream's duration control, chunk by chunk
            mel = torch.nn.functional.interpolate(
                mel, size=max(1, round(mel.shape[2] / self.speed)), mode="linear"
            )
        source = torch.zeros(1, 1, 0, device=dev)
        if self.hift_cache is not None:
            mel = torch.cat([self.hift_cache["mel"], mel], dim=2)
            source = self.hift_cache["source"]
        speech, src = m.hift.inference(speech_feat=mel, cache_source=source)
        if self.hift_cache is not None:
            speech = _fade(speech, self.hift_cache["speech"], self.speech_window)
        if not finalize:
            n = self.cache_samples
            self.hift_cache = {
                "mel": mel[:, :, -MEL_CACHE:],
                "source": src[:, :, -n:],
                "speech": speech[:, -n:],
            }
            speech = speech[:, :-n]
        out = speech[0].float().cpu().numpy()
        self.timings.hift_s += time.perf_counter() - t0
        return np.ascontiguousarray(out, dtype=np.float32)
