"""The CUDA-graph LM step against the eager one on the tiny CosyVoice2 model: the same log-probs
for the same inputs, whatever the input lengths and across utterances (GPU only), and a clear
refusal on a CPU model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.lm_graph import GraphLmStep
from nodes.synthesize.cosyvoice.stream import LmStep

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_refuses_a_cpu_model(tiny_models: tuple[Path, Path]) -> None:
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cpu"))
    with pytest.raises(ValueError, match="CUDA"):
        GraphLmStep(engine.model)


def sequences(engine: CosyVoiceEngine, seed: int) -> list[torch.Tensor]:
    """Inputs of one utterance as speech_tokens feeds them: 6, then 1s, a 6 (text group), 1s, a 3."""
    llm, dev = engine.model.llm, engine.model.device
    g = torch.Generator().manual_seed(seed)
    text = llm.llm.model.model.embed_tokens

    def t(n: int) -> torch.Tensor:
        return text(torch.randint(0, 100, (1, n), generator=g).to(dev))

    def s(n: int) -> torch.Tensor:
        return llm.speech_embedding(torch.randint(0, int(llm.speech_token_size), (1, n), generator=g).to(dev))

    sos = llm.llm_embedding.weight[llm.sos_eos].reshape(1, 1, -1)
    task = llm.llm_embedding.weight[llm.task_id].reshape(1, 1, -1)
    return [
        torch.cat([sos, t(5)], 1),
        *[s(1) for _ in range(14)],
        torch.cat([s(1), t(5)], 1),
        *[s(1) for _ in range(5)],
        torch.cat([s(1), t(1), task], 1),
        *[s(1) for _ in range(4)],
        torch.cat([s(1), t(12)], 1),  # longer than any graph: eager on the static cache
        s(1),
    ]


@cuda
@pytest.mark.parametrize(("dtype", "compiled"), [("float32", False), ("float16", False), ("float16", True)])
def test_graph_step_equals_eager_step(tiny_models: tuple[Path, Path], dtype: str, compiled: bool) -> None:
    """Graphed (and with compiled decoder layers) against the eager HF step of a fresh load."""
    engine = CosyVoiceEngine(tiny_models[1], EngineOptions(device="cuda", dtype=dtype, cuda_graphs="false"))
    eager = LmStep(
        CosyVoiceEngine(tiny_models[1], EngineOptions(device="cuda", dtype=dtype, cuda_graphs="false")).model
    )
    graph = GraphLmStep(engine.model, max_len=256, compile=compiled)
    graph.warm()
    with torch.inference_mode():
        for seed in (0, 1):  # two utterances: the second must not see the first's cache
            ce, cg = None, None
            for x in sequences(engine, seed):
                le, ce = eager(x, ce)
                lg, cg = graph(x, cg)
                err = float((le - lg).norm() / le.norm())
                assert err < (1e-4 if dtype == "float32" else 5e-3), err
                assert torch.isfinite(lg).all()
    assert graph.replays > 0 and graph.captures == 8  # every short length captured once, at warm()
