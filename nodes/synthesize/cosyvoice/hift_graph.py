"""CosyVoice2's vocoder (HiFT) replayed from CUDA graphs for the chunk shapes streaming repeats.

Why: a first chunk's HiFT call is ~18 ms of wall time on an H200 for a few hundred small
kernels (f0 predictor, harmonic source, STFT, three upsampling stages with nine Snake resblocks
each): launch bound, like the LM step and the flow estimator were (bench/results/ttfa-gpu.md).
Streaming calls it with few shapes: the first chunk (first_hop x token_mel_ratio mel frames, no
source cache) and every steady chunk (hop x ratio + the 8 cached frames, with the cached source);
those are captured at load, any other shape (the last chunk of an utterance) runs eagerly.

`vocode_head` + `vocode_tail` are HiFTGenerator.inference + decode (cosyvoice/hifigan/generator.py)
cut in two and nothing else changed: torch.istft checks its window envelope on the host (a sync,
refused in a capture), so the head (everything up to the spectrum) is graphed and the tail (the
iSTFT and the clamp, a few kernels) runs eagerly after each replay. nodes/cosyvoice_load's
prepare_hift made the head capturable at load. Its two random draws (the sine source's initial
phase and noise) come from the default CUDA generator in a graph too, advanced on every replay
like an eager call; under one seed a replay draws what the eager call draws
(tests/test_cosyvoice_hift_graph.py checks it on CUDA).
"""

from __future__ import annotations

from typing import Any

import torch

_Graph = tuple[
    torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]


def vocode_head(
    hift: Any, speech_feat: torch.Tensor, cache_source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiFTGenerator.inference up to decode's iSTFT: (magnitude, phase, harmonic source)."""
    import torch.nn.functional as F

    f0 = hift.f0_predictor(speech_feat)
    s = hift.f0_upsamp(f0[:, None]).transpose(1, 2)
    s, _, _ = hift.m_source(s)
    s = s.transpose(1, 2)
    if cache_source.shape[2] != 0:
        s[:, :, : cache_source.shape[2]] = cache_source
    s_stft_real, s_stft_imag = hift._stft(s.squeeze(1))
    s_stft = torch.cat([s_stft_real, s_stft_imag], dim=1)
    x = hift.conv_pre(speech_feat)
    for i in range(hift.num_upsamples):
        x = F.leaky_relu(x, hift.lrelu_slope)
        x = hift.ups[i](x)
        if i == hift.num_upsamples - 1:
            x = hift.reflection_pad(x)
        si = hift.source_downs[i](s_stft)
        si = hift.source_resblocks[i](si)
        x = x + si
        xs = None
        for j in range(hift.num_kernels):
            if xs is None:
                xs = hift.resblocks[i * hift.num_kernels + j](x)
            else:
                xs += hift.resblocks[i * hift.num_kernels + j](x)
        x = xs / hift.num_kernels
    x = F.leaky_relu(x)
    x = hift.conv_post(x)
    n = hift.istft_params["n_fft"] // 2 + 1
    return torch.exp(x[:, :n, :]), torch.sin(x[:, n:, :]), s


def vocode_tail(hift: Any, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """The rest of decode: iSTFT and clamp."""
    x = hift._istft(magnitude, phase)
    return torch.clamp(x, -hift.audio_limit, hift.audio_limit)


class GraphHift:
    """`vocode(mel, cache_source) -> (speech, source)`: hift.inference, graphed on CUDA per
    (mel frames, cached source samples); shapes not warmed run eagerly."""

    def __init__(self, hift: Any) -> None:
        self.hift = hift
        self.device = next(hift.parameters()).device
        if self.device.type != "cuda":
            raise ValueError("GraphHift needs a CUDA vocoder (call hift.inference elsewhere)")
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.captures = 0
        self.replays = 0
        self.eager_calls = 0

    def __call__(self, mel: torch.Tensor, cache_source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (int(mel.shape[2]), int(cache_source.shape[2]))
        graph = self.graphs.get(key)
        if graph is None or mel.shape[0] != 1:
            self.eager_calls += 1
            out: tuple[torch.Tensor, torch.Tensor] = self.hift.inference(
                speech_feat=mel, cache_source=cache_source
            )
            return out
        g, s_mel, s_cache, (magnitude, phase, source) = graph
        s_mel.copy_(mel)
        if key[1]:
            s_cache.copy_(cache_source)
        g.replay()
        self.replays += 1
        return vocode_tail(self.hift, magnitude, phase), source.clone()

    def warm(self, shapes: list[tuple[int, int]]) -> None:
        """Capture these (mel frames, cached source samples) shapes now, at load."""
        for key in shapes:
            if key not in self.graphs and key[0] > 0:
                self.graphs[key] = self._capture(key)

    def _capture(self, key: tuple[int, int]) -> _Graph:
        """Two eager runs of the head on a side stream (cuFFT plans, allocator), then its capture
        (its draws move the generator on; every synthesis seeds it again first)."""
        n_mel, n_cache = key
        dev = self.device
        mels = int(self.hift.conv_pre.in_channels)
        s_mel = torch.randn(1, mels, n_mel, device=dev)
        s_cache = torch.zeros(1, 1, n_cache, device=dev)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):
                vocode_head(self.hift, s_mel, s_cache)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), torch.inference_mode():
            outputs = vocode_head(self.hift, s_mel, s_cache)
        self.captures += 1
        return graph, s_mel, s_cache, outputs


def streaming_shapes(
    first_hop: int, hop: int, ratio: int, cache_mels: int, samples_per_mel: int
) -> list[tuple[int, int]]:
    """The (mel frames, cached source samples) of a first chunk and of a steady chunk."""
    return [(first_hop * ratio, 0), (hop * ratio + cache_mels, cache_mels * samples_per_mel)]


def model_streaming_shapes(model: Any, first_hop: int, hop: int) -> list[tuple[int, int]]:
    """streaming_shapes for a loaded model: its mel frames per token and samples per mel frame,
    and the frames ChunkVocoder re-vocodes at each chunk edge."""
    from nodes.synthesize.cosyvoice.stream import HIFT_CACHE_MELS

    ratio = int(model.params["token_mel_ratio"])
    return streaming_shapes(first_hop, hop, ratio, HIFT_CACHE_MELS, model.samples_per_mel)
