"""CosyVoice2's LM step replayed from CUDA graphs: the same call as cosyvoice_stream.LmStep.

Eager PyTorch spends ~22 ms a token on the 24-layer Qwen2 trunk of CosyVoice2-0.5B on an H100,
launching hundreds of small kernels (bench/results/gpu-notes.md); the GPU work itself is well
under 1 ms. So each input length the bistream protocol feeds (1 token while speaking, 2-7 when a
text group or the task id goes in) is captured once as a CUDA graph over a StaticCache (fixed
shapes, cache positions in a device tensor updated before each replay) and replayed after.
Longer inputs (a cloned voice's prompt) run eagerly on the same static cache. `warm()` captures
every short length at load, so no sentence pays for a capture.

The step keeps its KV state itself: `cache` passed back in is only a marker (None starts a new
utterance), exactly what speech_tokens does with LmStep's HF cache.
"""

from __future__ import annotations

from typing import Any

import torch

from nodes.synthesize.cosyvoice.torch_compile import compile_in_place, uncompile

GRAPH_MAX_INPUT = 8  # input lengths captured as graphs (bistream steps feed 1-7 embeddings)


def lm_compiled_parts(trunk: Any) -> list[torch.nn.Module]:
    """What compile_lm compiles: the RMS norms and the SiLU MLPs, whose elementwise kernels fuse;
    the 24 layers share one compiled code (parameters are its inputs). Attention stays eager: its
    cache update indexes by the layer number, a recompile per layer."""
    parts: list[torch.nn.Module] = [trunk.norm]
    for layer in trunk.layers:
        parts.extend((layer.input_layernorm, layer.post_attention_layernorm, layer.mlp))
    return parts


class GraphLmStep:
    """`step(x, cache) -> (log-probs over the speech vocabulary, cache marker)`, graphed on CUDA."""

    def __init__(self, model: Any, max_len: int = 2048, compile: bool = False) -> None:
        from transformers import StaticCache

        if model.device.type != "cuda":
            raise ValueError("GraphLmStep needs a CUDA model (use cosyvoice_stream.LmStep elsewhere)")
        self.llm = model.llm
        self.device = model.device
        self.trunk = self.llm.llm.model.model  # Qwen2Model: CosyVoice decodes its hidden states
        self.dtype = self.llm.llm_embedding.weight.dtype
        self.max_len = max_len
        self.dim = int(self.trunk.config.hidden_size)
        self.cache = StaticCache(
            config=self.trunk.config,
            max_batch_size=1,
            max_cache_len=max_len,
            device=self.device,
            dtype=self.dtype,
        )
        self.positions = torch.arange(max_len, device=self.device)
        self.pos = 0
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.captures = 0
        self.replays = 0
        parts = lm_compiled_parts(self.trunk)
        compile_in_place(parts) if compile else uncompile(parts)  # not compiled: plain modules

    def _forward(self, x: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        h = self.trunk(
            inputs_embeds=x, past_key_values=self.cache, use_cache=True, cache_position=cache_position
        ).last_hidden_state
        return self.llm.llm_decoder(h[:, -1]).float().log_softmax(dim=-1)[0]

    def _capture(self, n: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Capture length n at the current position (the warm-up runs write K/V at the positions
        the real call overwrites next, so the cache stays right)."""
        x = torch.zeros(1, n, self.dim, device=self.device, dtype=self.dtype)
        cp = self.positions[self.pos : self.pos + n].clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):
                self._forward(x, cp)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), torch.inference_mode():
            out = self._forward(x, cp)
        self.captures += 1
        return graph, x, cp, out

    def warm(self) -> None:
        """Capture every graphed length now (at load), then start clean."""
        for n in range(1, GRAPH_MAX_INPUT + 1):
            self.pos = 0
            if n not in self.graphs:
                self.graphs[n] = self._capture(n)
        self.reset()

    def reset(self) -> None:
        self.cache.reset()  # type: ignore[attr-defined]
        self.pos = 0

    def __call__(self, x: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        if cache is None:
            self.reset()
        n = int(x.shape[1])
        if self.pos + n > self.max_len:
            raise RuntimeError(
                f"LM sequence of {self.pos + n} embeddings exceeds the static cache ({self.max_len})"
            )
        if n > GRAPH_MAX_INPUT:
            with torch.inference_mode():
                logp = self._forward(x.to(self.dtype), self.positions[self.pos : self.pos + n])
            self.pos += n
            return logp, self
        if n not in self.graphs:
            self.graphs[n] = self._capture(n)
        graph, x_in, cp, out = self.graphs[n]
        x_in.copy_(x)
        cp.copy_(self.positions[self.pos : self.pos + n])
        graph.replay()
        self.replays += 1
        self.pos += n
        return out.clone(), self
