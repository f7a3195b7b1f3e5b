"""The tensor sampler against upstream's own ras_sampling: under one seed, the same tokens for the
same scores and history, whatever the shape of the distribution; a model's yaml settings are read;
and a whole utterance on the tiny model comes out the same with either sampler."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from cosyvoice.utils.common import ras_sampling
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.sampling import ras_sample, ras_settings, sampler_for, upstream_sampler
from nodes.synthesize.cosyvoice.stream import TOP_K

VOCAB = 6561 + 3  # speech tokens + eos, task id, fill (what speech_tokens hands the sampler)


def scores(seed: int, sharpness: float, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(VOCAB, generator=g) * sharpness
    if ties:  # equal scores: the stable sort's order decides
        x = x.round()
    x[-2:] = -float("inf")  # masked as the protocol masks task id / fill
    return x.log_softmax(dim=0)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    sharpness=st.sampled_from([0.1, 1.0, 3.0, 6.0, 12.0, 40.0]),
    ties=st.booleans(),
    history=st.lists(st.integers(0, 39), max_size=30),
)
def test_same_tokens_as_upstream(seed: int, sharpness: float, ties: bool, history: list[int]) -> None:
    logp = scores(seed, sharpness, ties)
    # a history drawn from the likely tokens, so the repetition re-draw happens too
    top = logp.argsort(descending=True)[:40].tolist()
    decoded = [top[i] for i in history]
    torch.manual_seed(seed)
    want = int(ras_sampling(logp.clone(), decoded, TOP_K, top_p=0.8, top_k=25, win_size=10, tau_r=0.1))
    want_next = torch.rand(1)  # both consumed the same random numbers
    torch.manual_seed(seed)
    got = ras_sample(logp.clone(), decoded, top_p=0.8, top_k=25, win_size=10, tau_r=0.1)
    assert got == want
    assert torch.equal(torch.rand(1), want_next)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_tokens_as_upstream_on_cuda() -> None:
    """On the GPU, where the two differ most in cost, they still draw the same tokens."""
    for seed in range(200):
        logp = scores(seed, [0.1, 1.0, 3.0, 6.0, 12.0][seed % 5]).cuda()
        top = logp.argsort(descending=True)[:40].tolist()
        decoded = [top[(seed * 7 + i) % 40] for i in range(seed % 12)]
        torch.manual_seed(seed)
        want = int(ras_sampling(logp.clone(), decoded, TOP_K, top_p=0.8, top_k=25, win_size=10, tau_r=0.1))
        torch.manual_seed(seed)
        assert ras_sample(logp.clone(), decoded) == want, seed


def test_a_repeated_pick_is_redrawn_from_the_whole_distribution() -> None:
    probs = torch.full((VOCAB,), 0.15 / (VOCAB - 1))
    probs[42] = 0.85  # the nucleus (top_p 0.8) is token 42 alone
    logp = probs.log()
    picks_fresh, picks_repeated = set(), set()
    for seed in range(60):
        torch.manual_seed(seed)
        picks_fresh.add(ras_sample(logp, [1, 2, 3]))
        torch.manual_seed(seed)
        picks_repeated.add(ras_sample(logp, [42, 1, 2]))  # 42 was said within the window
    assert picks_fresh == {42}
    assert len(picks_repeated) > 1  # re-drawn: other tokens (15% of the mass) come up


def test_settings_come_from_the_models_partial() -> None:
    partial = functools.partial(ras_sampling, top_p=0.7, top_k=10, win_size=5, tau_r=0.2)
    assert ras_settings(partial) == {"top_p": 0.7, "top_k": 10.0, "win_size": 5.0, "tau_r": 0.2}
    assert ras_settings(functools.partial(ras_sampling)) == {
        "top_p": 0.8,
        "top_k": 25.0,
        "win_size": 10.0,
        "tau_r": 0.1,
    }
    assert ras_settings(lambda *a: 0) is None  # another sampler: called as upstream calls it


def test_a_model_with_another_sampler_keeps_it() -> None:
    class Llm:
        @staticmethod
        def sampling(logp: torch.Tensor, decoded: list[int], k: int) -> torch.Tensor:
            return torch.tensor([7])

    assert sampler_for(Llm(), TOP_K)(torch.zeros(10), []) == 7


def test_an_utterance_is_the_same_with_either_sampler(tiny_models: tuple[Path, Path]) -> None:
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu", deadline_s=60))
    text = ["テストを実行しました、", "すべて通りました。"]
    ours = [c.pcm for c in engine.synthesize(text)]
    engine.sampler = upstream_sampler(engine.model.llm, TOP_K)
    theirs = [c.pcm for c in engine.synthesize(text)]
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        assert float(abs(a - b).max()) == pytest.approx(0.0, abs=1e-6)
