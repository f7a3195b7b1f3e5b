"""CosyVoice v1's speech tokens: the whole text in, speech tokens out one by one.

v1's `TransformerLM` reads its input as one sequence (upstream's TransformerLM.inference):
    sos, speaker vector, encoded text (prompt text + text), task_id, prompt speech tokens
then decodes speech tokens step by step with the attention cache of its transformer
(`forward_chunk`, all history kept). The text goes through a conformer text encoder first, so
the first speech token waits for the whole text: the unit v1 speaks is the text it is given.
eos is refused until `min_ratio` x the text's tokens (its score masked before the draw, as
upstream's TransformerLM.sampling_ids does since 0e62489, 2026-02-11; before, it drew again until
no eos came); the utterance stops at `max_ratio` x. Sampling is the model's own rule (ras_sampling,
as tensor ops: nodes/synthesize/cosyvoice/sampling.py) under a fixed seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from nodes.synthesize.cosyvoice.sampling import sampler_for
from nodes.synthesize.cosyvoice.stream import Clock, Timings, autocast_for

TOP_K = 25  # the `sampling` argument upstream passes to ras_sampling

State = tuple[int, torch.Tensor, torch.Tensor]  # (offset, attention cache, cnn cache)


class LmStep:
    """One forward of v1's LM over the inputs not yet seen, with its attention cache."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.llm = model.llm
        self.device = model.device

    def __call__(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        if state is None:
            empty = torch.zeros((0, 0, 0, 0), device=self.device)
            state = (0, empty, empty)
        offset, att_cache, cnn_cache = state
        n = x.shape[1]
        causal = torch.tril(torch.ones((1, n, n), device=self.device)).to(torch.bool)
        with autocast_for(self.model):  # half precision on CUDA, as upstream's llm_job runs it
            y, att_cache, cnn_cache = self.llm.llm.forward_chunk(
                x,
                offset=offset,
                required_cache_size=-1,
                att_cache=att_cache,
                cnn_cache=cnn_cache,
                att_mask=causal,
            )
            logp = self.llm.llm_decoder(y[:, -1]).float().log_softmax(dim=-1)[0]
        return logp, (offset + n, att_cache, cnn_cache)


def lm_input(
    model: Any, text: list[int], prompt_text: list[int], prompt_speech: list[int], embedding: Any
) -> torch.Tensor:
    """The LM's first input: sos, speaker vector (none if `embedding` is None), encoded prompt text
    + text, task_id, prompt speech tokens (upstream's TransformerLM.inference, steps 1-3)."""
    llm, dev = model.llm, model.device
    ids = torch.tensor([prompt_text + text], dtype=torch.int32, device=dev)
    with autocast_for(model):
        length = torch.tensor([ids.shape[1]], dtype=torch.int32, device=dev)
        encoded, _ = llm.encode(llm.text_embedding(ids), length)
        width, dtype = llm.llm_input_size, llm.llm_embedding.weight.dtype
        if embedding is not None:
            spk = llm.spk_embed_affine_layer(F.normalize(embedding.to(dev), dim=1)).unsqueeze(1)
        else:
            spk = torch.zeros(1, 0, width, device=dev)
        if prompt_speech:
            speech = llm.speech_embedding(torch.tensor([prompt_speech], dtype=torch.int32, device=dev))
        else:
            speech = torch.zeros(1, 0, width, device=dev)
        sos = llm.llm_embedding.weight[llm.sos_eos].reshape(1, 1, -1)
        task = llm.llm_embedding.weight[llm.task_id].reshape(1, 1, -1)
        return torch.cat([t.to(dtype) for t in (sos, spk, encoded, task, speech)], dim=1)


def speech_tokens(
    model: Any,
    text: list[int],
    prompt_text: list[int],
    prompt_speech: list[int],
    embedding: Any,
    clock: Clock,
    timings: Timings,
    *,
    min_ratio: float = 2.0,
    max_ratio: float = 20.0,
    step: Callable[[torch.Tensor, State | None], tuple[torch.Tensor, State]] | None = None,
    sampler: Callable[[torch.Tensor, list[int]], int] | None = None,
) -> Iterator[int]:
    """Speech tokens of `text` (token ids) as the LM makes them; eos ends the generator."""
    llm = model.llm
    forward = step or LmStep(model)
    draw = sampler or sampler_for(llm, TOP_K)
    eos = int(llm.speech_token_size)
    clock.check()
    t0 = time.perf_counter()
    x = lm_input(model, text, prompt_text, prompt_speech, embedding)
    timings.lm_s += time.perf_counter() - t0
    min_len, max_len = int(len(text) * min_ratio), int(len(text) * max_ratio)
    out: list[int] = []
    state: State | None = None
    for i in range(max_len):
        clock.check()
        t0 = time.perf_counter()
        logp, state = forward(x, state)
        if i < min_len or i == 0:  # never eos first, nor before min_len
            logp[eos] = -float("inf")
        token = draw(logp, out)
        timings.lm_s += time.perf_counter() - t0
        timings.lm_steps += 1
        if token == eos:
            return
        out.append(token)
        yield token
        x = llm.speech_embedding.weight[token].reshape(1, 1, -1)


def lm_step_ms(model: Any, steps: int = 8) -> float:
    """Milliseconds per LM step of a v1 `model` where it is now (the device probe's workload,
    as nodes/synthesize/cosyvoice/device.py `lm_step_ms` for v2): a prompt-sized prefix, a few
    warm-up steps, then `steps` timed single-token steps, each read back."""
    from nodes.synthesize.cosyvoice.device import PROBE_PREFIX, PROBE_WARM_STEPS

    step = LmStep(model)
    with torch.inference_mode():
        x = model.llm.speech_embedding(torch.zeros(1, 1, dtype=torch.long, device=model.device))
        logp, state = step(x.repeat(1, PROBE_PREFIX, 1), None)
        for _ in range(PROBE_WARM_STEPS):
            logp, state = step(x, state)
        int(logp.argmax())
        t0 = time.perf_counter()
        for _ in range(steps):
            logp, state = step(x, state)
            int(logp.argmax())
        return (time.perf_counter() - t0) * 1000 / steps
