"""The vocoder made capturable (nodes/cosyvoice_load.prepare_hift) computes what upstream's does,
bit for bit; on a GPU its graph replays draw what eager calls draw under one seed, and shapes not
captured fall back to eager (nodes/synthesize/cosyvoice/hift_graph.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.utils import parametrize

from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.hift_graph import (
    GraphHift,
    model_streaming_shapes,
    streaming_shapes,
    vocode_head,
    vocode_tail,
)
from nodes.synthesize.cosyvoice.load import build_sections, hift_capturable, load_hift_weights, prepare_hift

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def upstream_hift(model_dir: Path) -> Any:
    """HiFT as upstream loads it: built from the yaml, weights strict, weight norm left on."""
    hift = build_sections(model_dir, ["hift"])["hift"]
    load_hift_weights(hift, model_dir)
    return hift.eval()


def test_prepared_hift_computes_the_same_bits(tiny_models: tuple[Path, Path]) -> None:
    hift = upstream_hift(tiny_models[1])
    assert any(parametrize.is_parametrized(m, "weight") for m in hift.modules())
    g = torch.Generator().manual_seed(3)
    mel, cached = torch.randn(1, 80, 28, generator=g), torch.randn(1, 1, 8 * 480, generator=g)
    before = []
    for cache in (torch.zeros(1, 1, 0), cached):
        torch.manual_seed(7)
        before.append(hift.inference(speech_feat=mel, cache_source=cache))
    assert not hift_capturable(hift)
    prepare_hift(hift)
    assert hift_capturable(hift)
    assert not any(parametrize.is_parametrized(m, "weight") for m in hift.modules())
    assert "stft_window" in dict(hift.named_buffers())  # moves with .to(device) from now on
    assert "stft_window" not in hift.state_dict()  # the weights files never held it
    assert not any("harmonics" in k for k in hift.state_dict())
    for (speech, source), cache in zip(before, (torch.zeros(1, 1, 0), cached), strict=True):
        torch.manual_seed(7)
        got_speech, got_source = hift.inference(speech_feat=mel, cache_source=cache)
        assert torch.equal(got_speech, speech) and torch.equal(got_source, source)
        assert speech.abs().max() > 0


def test_head_and_tail_are_upstream_inference(tiny_models: tuple[Path, Path]) -> None:
    hift = upstream_hift(tiny_models[1])
    prepare_hift(hift)
    g = torch.Generator().manual_seed(4)
    mel = torch.randn(1, 80, 58, generator=g)
    for cache in (torch.zeros(1, 1, 0), torch.randn(1, 1, 8 * 480, generator=g)):
        torch.manual_seed(2)
        speech, source = hift.inference(speech_feat=mel, cache_source=cache)
        torch.manual_seed(2)
        with torch.inference_mode():
            magnitude, phase, got_source = vocode_head(hift, mel, cache)
            got = vocode_tail(hift, magnitude, phase)
        assert torch.equal(got, speech) and torch.equal(got_source, source)


def test_graph_hift_refuses_a_cpu_vocoder(tiny_models: tuple[Path, Path]) -> None:
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu"))
    with pytest.raises(ValueError, match="CUDA"):
        GraphHift(engine.model.hift)
    assert engine._vocode is None  # eager on the CPU


def test_streaming_shapes() -> None:
    # first chunk: first_hop tokens x 2 mels, no source; steady: hop x 2 + 8 cached mels and their source
    assert streaming_shapes(10, 25, 2, 8, 480) == [(20, 0), (58, 3840)]


def test_the_warmed_shapes_are_the_ones_a_synthesis_calls_the_vocoder_with(
    tiny_models: tuple[Path, Path],
) -> None:
    """What the engine captures at load (model_streaming_shapes) against the (mel frames, cached
    source samples) of the real vocoder calls of a sentence on the CPU: its first two chunks."""
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu", first_hop_tokens=5, hop_tokens=5))
    hift = engine.model.hift
    calls: list[tuple[int, int]] = []

    def record(mel: torch.Tensor, source: torch.Tensor) -> Any:
        calls.append((int(mel.shape[2]), int(source.shape[2])))
        return hift.inference(speech_feat=mel, cache_source=source)

    engine._vocode = record
    chunks = list(engine.synthesize(["今日は良い天気ですね、散歩に行きましょう。"]))
    assert len(chunks) >= 3 and len(calls) == len(chunks)
    assert calls[:2] == model_streaming_shapes(engine.model, 5, 5)


@cuda
def test_graph_replay_draws_what_eager_draws(tiny_models: tuple[Path, Path]) -> None:
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cuda", cuda_graphs="false"))
    hift = engine.model.hift
    vocode = GraphHift(hift)
    shapes = streaming_shapes(10, 25, 2, 8, 480)
    vocode.warm(shapes)
    assert vocode.captures == 2
    g = torch.Generator().manual_seed(11)
    with torch.inference_mode():
        for n_mel, n_cache in [*shapes, (20, 0), (33, 0)]:
            mel = torch.randn(1, 80, n_mel, generator=g).cuda()
            cache = torch.randn(1, 1, n_cache, generator=g).cuda() * 0.1
            torch.manual_seed(9)
            ref_speech, ref_source = hift.inference(speech_feat=mel, cache_source=cache)
            torch.manual_seed(9)
            speech, source = vocode(mel, cache)
            assert speech.shape == ref_speech.shape and source.shape == ref_source.shape
            err = (speech - ref_speech).norm() / ref_speech.norm()
            assert err < 1e-4, (n_mel, n_cache, float(err))
            assert torch.allclose(source, ref_source, atol=1e-5)
            ref_next, _ = hift.inference(speech_feat=mel, cache_source=cache)  # the generator moved on
            assert not torch.allclose(ref_next, ref_speech)
    assert vocode.replays == 3 and vocode.eager_calls == 1  # (33, 0) was not captured
