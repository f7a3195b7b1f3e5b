"""The capturable flow estimator against upstream's on the tiny CosyVoice2 model: the same output
(streaming and not, padded masks included), padding at the end changes nothing before it, no host
sync in the new forward (the detector sees upstream's), and on a GPU the graph replays equal eager."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.flow_graph import GraphEstimator, causal, install, static_forward

SYNC_OPS = ("aten.item", "aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.masked_select")


class OpLog(TorchDispatchMode):
    """Records every aten op name run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(str(func.overloadpacket).replace("aten::", "aten."))
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def estimator(tiny_models: tuple[Path, Path]) -> Any:
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu"))
    return engine.model.flow.decoder.estimator


def inputs(n: int, seed: int, pad: int = 0, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    mask = torch.ones(2, 1, n, device=device)
    if pad:
        mask[1, :, n - pad :] = 0  # the second row padded: the masks' fix-up path
    return r(2, 80, n), mask, r(2, 80, n), torch.rand(2, generator=g).to(device), r(2, 80), r(2, 80, n)


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize(("n", "pad"), [(7, 0), (30, 0), (61, 9), (130, 75)])
def test_static_forward_equals_upstream(estimator: Any, streaming: bool, n: int, pad: int) -> None:
    x, mask, mu, t, spks, cond = inputs(n, seed=n + pad)
    with torch.inference_mode():
        ref = estimator(x, mask, mu, t, spks, cond, streaming=streaming)
        got = static_forward(estimator, x, mask, mu, t, spks, cond, streaming)
    assert got.shape == ref.shape
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("streaming", [True, False])
def test_padding_at_the_end_changes_nothing_before_it(estimator: Any, streaming: bool) -> None:
    assert causal(estimator)
    n, padded = 37, 64
    x, mask, mu, t, spks, cond = inputs(padded, seed=3)
    mask[:, :, n:] = 0
    with torch.inference_mode():
        ref = estimator(x[..., :n], mask[..., :n], mu[..., :n], t, spks, cond[..., :n], streaming=streaming)
        junk = torch.randn(2, 80, padded - n) * 50  # whatever lies in the padding must not leak back
        x2 = torch.cat([x[..., :n], junk], dim=2)
        got = static_forward(estimator, x2, mask, mu, t, spks, cond, streaming)[..., :n]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_no_host_sync_in_the_static_forward(estimator: Any) -> None:
    x, mask, mu, t, spks, cond = inputs(40, seed=1)
    with torch.inference_mode():
        with OpLog() as upstream:
            estimator(x, mask, mu, t, spks, cond, streaming=True)
        with OpLog() as ours:
            static_forward(estimator, x, mask, mu, t, spks, cond, True)
    assert any(op in SYNC_OPS for op in upstream.ops)  # the detector sees upstream's .item()
    assert not [op for op in ours.ops if op in SYNC_OPS]


def test_installed_wrapper_is_eager_on_cpu_and_the_same(tiny_models: tuple[Path, Path]) -> None:
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu"))
    flow = engine.model.flow
    inner = flow.decoder.estimator
    wrapper = install(flow)
    assert isinstance(wrapper, GraphEstimator) and install(flow) is wrapper
    assert not wrapper.graphs_on
    x, mask, mu, t, spks, cond = inputs(25, seed=5)
    with torch.inference_mode():
        torch.testing.assert_close(
            flow.decoder.forward_estimator(x, mask, mu, t, spks, cond, True),
            inner(x, mask, mu, t, spks, cond, streaming=True),
            rtol=1e-5,
            atol=1e-6,
        )
    assert wrapper.eager_calls == 1 and wrapper.replays == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_graph_replay_equals_eager_on_cuda(
    tiny_models: tuple[Path, Path], dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "float32" if dtype == torch.float32 else "float16"
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cuda", dtype=name, cuda_graphs="false"))
    inner = engine.model.flow.decoder.estimator
    wrapper = GraphEstimator(inner)
    # fp32: no TF32 in cuDNN's convs, whose algorithm (and so TF32 rounding, ~5e-4) differs between
    # the padded and the exact length; fp16 is compared at its own precision
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    with torch.inference_mode():
        for n, streaming in [(30, True), (47, True), (30, True), (64, False), (90, True)]:
            x, mask, mu, t, spks, cond = (a.to(dtype) for a in inputs(n, seed=n, device="cuda"))
            ref = static_forward(inner, x, mask, mu, t, spks, cond, streaming)
            got = wrapper(x, mask, mu, t, spks, cond, streaming=streaming)
            err = (got.float() - ref.float()).norm() / ref.float().norm()
            assert err < (1e-4 if dtype == torch.float32 else 5e-3), (n, streaming, float(err))
    assert wrapper.replays == 5 and wrapper.captures == 4  # (32, T) twice, (64, T), (64, F), (96, T)


def test_cuda_graphs_setting(tiny_models: tuple[Path, Path]) -> None:
    from bus.errors import EngineError, ModelLoadError
    from nodes.synthesize.settings import SynthSettings

    assert SynthSettings.from_section({"cuda_graphs": True}).cuda_graphs == "true"
    assert SynthSettings.from_section({"cuda_graphs": False}).cuda_graphs == "false"
    default = SynthSettings.from_section({})
    assert default.cuda_graphs == "auto"
    assert default.compile_flow and default.compile_lm  # on, but only with the CUDA graphs
    with pytest.raises(EngineError, match="cuda_graphs"):
        SynthSettings.from_section({"cuda_graphs": "sometimes"})
    neither = SynthSettings.from_section({"compile_flow": False, "compile_lm": False})
    assert not neither.compile_flow and not neither.compile_lm
    with pytest.raises(EngineError, match="compile_flow must be bool"):
        SynthSettings.from_section({"compile_flow": "yes"})
    with pytest.raises(EngineError, match="hop_tokens must be int"):  # a bool is not an int here
        SynthSettings.from_section({"hop_tokens": True})
    with pytest.raises(ValueError, match="cuda_graphs"):
        EngineOptions(cuda_graphs="yes")
    with pytest.raises(ModelLoadError, match="CUDA"):
        CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu", cuda_graphs="true"))
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu"))  # auto on a CPU: eager
    assert engine.graphs == "off" and engine._step is None
    assert not isinstance(engine.model.flow.decoder.estimator, GraphEstimator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_engine_with_graphs_speaks_like_without(tiny_models: tuple[Path, Path]) -> None:
    """The graphed engine's audio against the eager one's on CUDA, float32 (sampling is seeded; the
    flow's own noise is fixed): same number of samples, close waveforms."""
    text = ["テストを実行しました、", "すべて通りました。"]
    out = {}
    for graphs in ("false", "true"):
        engine = CosyVoiceEngine(
            tiny_models[1], EngineOptions(device="cuda", dtype="float32", cuda_graphs=graphs)
        )
        assert engine.graphs == ("lm(compiled)+flow(compiled)+hift" if graphs == "true" else "off")
        out[graphs] = np.concatenate([c.pcm for c in engine.synthesize(text)])
    a, b = out["false"], out["true"]
    assert a.shape == b.shape and a.size > 0
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_graph_replay_equals_eager_on_cuda(tiny_models: tuple[Path, Path]) -> None:
    """torch.compile'd estimator, then captured, fp16: as close to the float32 function as fp16
    eager is (inductor rounds differently: it keeps fused intermediates in float32)."""
    half = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cuda", dtype="float16", cuda_graphs="false"))
    full = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cuda", dtype="float32", cuda_graphs="false"))
    inner, inner32 = half.model.flow.decoder.estimator, full.model.flow.decoder.estimator
    cases = [(26, True), (58, True), (64, False), (26, True)]
    refs = []
    with torch.inference_mode():  # the references first: compiling changes the blocks in place
        for n, streaming in cases:
            x, mask, mu, t, spks, cond = inputs(n, seed=n, device="cuda")
            ref = static_forward(inner32, x, mask, mu, t, spks, cond, streaming).float()
            hx, hmask, hmu, ht, hspks, hcond = (a.half() for a in (x, mask, mu, t, spks, cond))
            half_in = (hx, hmask, hmu, ht, hspks, hcond)
            eager = static_forward(inner, hx, hmask, hmu, ht, hspks, hcond, streaming).float()
            refs.append((ref, eager, half_in))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    wrapper = GraphEstimator(inner, compile=True)
    assert wrapper.compiled
    with torch.inference_mode():
        for (n, streaming), (ref, eager, half_in) in zip(cases, refs, strict=True):
            got = wrapper(*half_in, streaming=streaming).float()
            err_eager = float((eager - ref).norm() / ref.norm())
            err = float((got - ref).norm() / ref.norm())
            assert torch.isfinite(got).all()
            assert err < 2 * err_eager + 1e-3, (n, streaming, err, err_eager)
    assert wrapper.replays == 4 and wrapper.captures == 3
    # one code per block class, shared by every instance and length: not a compile per block
    frames = torch._dynamo.utils.counters["frames"]
    assert 0 < frames["ok"] <= 6, dict(frames)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_failing_compiler_costs_the_compile_not_the_graphs(
    tiny_models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch.compile backend that raises (as inductor does without Triton): the engine undoes the
    compile, captures the graphs without it, says so, and speaks like the eager engine."""
    import nodes.synthesize.cosyvoice.torch_compile

    def broken(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("no Triton here")

    torch._dynamo.reset()
    monkeypatch.setattr(nodes.synthesize.cosyvoice.torch_compile, "BACKEND", broken)
    text = ["テストを実行しました、", "すべて通りました。"]
    cuda32 = EngineOptions(device="cuda", dtype="float32", cuda_graphs="true")
    engine = CosyVoiceEngine(tiny_models[1], cuda32)
    assert engine.graphs.startswith("lm+flow+hift (torch.compile failed"), engine.graphs
    assert "no Triton here" in engine.graphs
    est = engine.model.flow.decoder.estimator
    assert isinstance(est, GraphEstimator) and not est.compiled and est.captures > 0
    got = np.concatenate([c.pcm for c in engine.synthesize(text)])
    eager = CosyVoiceEngine(tiny_models[1], dataclasses.replace(cuda32, cuda_graphs="false"))
    want = np.concatenate([c.pcm for c in eager.synthesize(text)])
    assert got.shape == want.shape and np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2
    torch._dynamo.reset()
