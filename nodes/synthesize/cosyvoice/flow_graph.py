"""CosyVoice2's flow estimator (the CFM decoder) replayed from CUDA graphs.

Why: one first chunk runs the estimator 10 times (Euler steps, batch 2 for CFG); on an H100 each
call launched ~2,200 kernels for ~5 ms of GPU work but took ~46 ms of wall time, and made 30 host
syncs (bench/results/synth-gpu.md): the flow was launch bound. Upstream's decoder cannot be
captured as it is: each of its 14 attention masks goes through `add_optional_chunk_mask`, whose
"no row may be all false" fix-up asks the GPU `(...).sum().item()` (a sync, forbidden in capture).

`static_forward` is CausalConditionalDecoder.forward with that fix-up done on the device
(`rows | empty_rows`, which sets an all-false row to all true exactly as the indexed assignment
does) and nothing else changed: the same submodules in the same order, so the same function.

`GraphEstimator` replaces `flow.decoder.estimator` (the CFM calls it as a Module). On CUDA it
captures one graph per (padded length, streaming, dtype) and replays it; elsewhere, or with
graphs off, it runs `static_forward` eagerly. Lengths are padded up to a multiple of
`bucket` mel frames with mask 0, so the few shapes a sentence produces share graphs: exact for
this decoder because every convolution in it is causal (CausalConv1d, no up/down sampling in
CosyVoice2's one-level U-Net) and padded keys are masked out of attention, so frames < T never
see the padding. A decoder with non-causal resampling is graphed only at exact lengths.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from nodes.synthesize.cosyvoice.torch_compile import compile_in_place, uncompile

GRAPH_MAX_MELS = 2048  # longer inputs (rare: a very long utterance's final chunk) run eagerly
BUCKET_MELS = 32  # lengths are padded up to a multiple of this


def chunk_bias(
    x_len: int, mask: torch.Tensor, streaming: bool, static_chunk_size: int, dtype: torch.dtype
) -> torch.Tensor:
    """Attention bias of one decoder level: add_optional_chunk_mask + mask_to_bias, without a sync."""
    from cosyvoice.utils.mask import subsequent_chunk_mask

    keys = mask.bool()  # (B, 1, L)
    if streaming and static_chunk_size > 0:
        allowed = keys & subsequent_chunk_mask(x_len, static_chunk_size, -1, mask.device).unsqueeze(0)
    else:
        allowed = keys
    allowed = allowed | (allowed.sum(dim=-1, keepdim=True) == 0)  # upstream's fix-up, on the device
    if not (streaming and static_chunk_size > 0):
        allowed = allowed.repeat(1, x_len, 1)
    return (1.0 - allowed.to(dtype)) * -1.0e10


def static_forward(
    est: Any,
    x: torch.Tensor,
    mask: torch.Tensor,
    mu: torch.Tensor,
    t: torch.Tensor,
    spks: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    streaming: bool = False,
) -> torch.Tensor:
    """CausalConditionalDecoder.forward (cosyvoice/flow/decoder.py) with sync-free masks."""
    from einops import pack, rearrange, repeat

    t = est.time_embeddings(t).to(t.dtype)
    t = est.time_mlp(t)
    x = pack([x, mu], "b * t")[0]
    if spks is not None:
        spks = repeat(spks, "b c -> b c t", t=x.shape[-1])
        x = pack([x, spks], "b * t")[0]
    if cond is not None:
        x = pack([x, cond], "b * t")[0]

    def attend(blocks: Any, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        x = rearrange(x, "b c t -> b t c").contiguous()
        bias = chunk_bias(x.size(1), m, streaming, est.static_chunk_size, x.dtype)
        for block in blocks:
            x = block(hidden_states=x, attention_mask=bias, timestep=t)
        return rearrange(x, "b t c -> b c t").contiguous()

    hiddens = []
    masks = [mask]
    for resnet, transformer_blocks, downsample in est.down_blocks:
        mask_down = masks[-1]
        x = attend(transformer_blocks, resnet(x, mask_down, t), mask_down)
        hiddens.append(x)
        x = downsample(x * mask_down)
        masks.append(mask_down[:, :, ::2])
    masks = masks[:-1]
    mask_mid = masks[-1]
    for resnet, transformer_blocks in est.mid_blocks:
        x = attend(transformer_blocks, resnet(x, mask_mid, t), mask_mid)
    mask_up = mask
    for resnet, transformer_blocks, upsample in est.up_blocks:
        mask_up = masks.pop()
        skip = hiddens.pop()
        x = pack([x[:, :, : skip.shape[-1]], skip], "b * t")[0]
        x = attend(transformer_blocks, resnet(x, mask_up, t), mask_up)
        x = upsample(x * mask_up)
    x = est.final_block(x, mask_up)
    output = est.final_proj(x * mask_up)
    return output * mask


def causal(est: Any) -> bool:
    """True when every resampler is a causal conv: frames < T never depend on frames >= T."""
    from cosyvoice.flow.decoder import CausalConv1d

    return all(isinstance(b[2], CausalConv1d) for b in [*est.down_blocks, *est.up_blocks])


def decoder_blocks(est: Any) -> list[torch.nn.Module]:
    """The decoder's resnets and transformer blocks: what compile_flow compiles, one by one.

    Block by block, not the whole forward: the 56 transformer blocks (and the 14 resnets) are
    instances of one class each, so they share one compiled code with the parameters as inputs,
    and dynamic shapes let every padded length reuse it. Compiling the whole forward traced all
    70 blocks as one graph and recompiled it per length: at the real size its warm-up had not
    finished after 3.5 minutes (bench/results/ttfa-gpu.md). The mask repair and the skip
    concatenations between the blocks stay eager; the capture that follows removes their launch
    gaps anyway."""
    blocks: list[torch.nn.Module] = []
    for group in (*est.down_blocks, *est.mid_blocks, *est.up_blocks):
        blocks.append(group[0])
        blocks.extend(group[1])
    return blocks


_Graph = tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]


class GraphEstimator(torch.nn.Module):
    """Drop-in for `flow.decoder.estimator`: the same call, graphed on CUDA (see the module doc)."""

    def __init__(
        self,
        estimator: torch.nn.Module,
        graphs: bool = True,
        bucket: int = BUCKET_MELS,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(estimator, GraphEstimator):  # already wrapped (e.g. the engine did at load)
            estimator = estimator.inner
        self.inner: Any = estimator
        params = next(estimator.parameters())
        self.graphs_on = graphs and params.device.type == "cuda"
        self.bucket = bucket if causal(estimator) else 1
        self.graphs: dict[tuple[int, bool, torch.dtype], _Graph] = {}
        self.pool: Any = torch.cuda.graph_pool_handle() if self.graphs_on else None
        self.captures = 0
        self.replays = 0
        self.eager_calls = 0
        # torch.compile (inductor) fuses the decoder's ~2,200 kernels a call before the capture:
        # graphs take the launch gaps away, fusion takes the kernels' own time (GPU only)
        self.compiled = compile and self.graphs_on
        blocks = decoder_blocks(estimator)
        compile_in_place(blocks) if self.compiled else uncompile(blocks)  # not compiled: plain blocks

    def padded(self, n: int) -> int:
        return -(-n // self.bucket) * self.bucket

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        mu: torch.Tensor,
        t: torch.Tensor,
        spks: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        streaming: bool = False,
    ) -> torch.Tensor:
        n = int(x.shape[2])
        if not self.graphs_on or spks is None or cond is None or self.padded(n) > GRAPH_MAX_MELS:
            self.eager_calls += 1
            return static_forward(self.inner, x, mask, mu, t, spks, cond, streaming)
        key = (self.padded(n), bool(streaming), x.dtype)
        if key not in self.graphs:
            self.graphs[key] = self._capture(key, x, mu, t, spks, cond)
        graph, (sx, smask, smu, st, sspks, scond), out = self.graphs[key]
        if n < key[0]:  # the padding: zeros, mask 0
            for s in (sx, smask, smu, scond):
                s[:, :, n:].zero_()
        sx[:, :, :n].copy_(x)
        smask[:, :, :n].copy_(mask)
        smu[:, :, :n].copy_(mu)
        scond[:, :, :n].copy_(cond)
        st.copy_(t)
        sspks.copy_(spks)
        graph.replay()
        self.replays += 1
        return out[:, :, :n].clone()

    def _capture(
        self,
        key: tuple[int, bool, torch.dtype],
        x: torch.Tensor,
        mu: torch.Tensor,
        t: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
    ) -> _Graph:
        """Static inputs of the padded shape, two eager warm-up runs on a side stream, then the capture
        (autocast's weight cache off inside it, as torch.cuda.graph requires)."""
        n, streaming, _ = key
        b, dev = x.shape[0], x.device

        def like(a: torch.Tensor) -> torch.Tensor:
            return torch.zeros(b, a.shape[1], n, device=dev, dtype=a.dtype)

        statics = [
            like(x),
            torch.ones(b, 1, n, device=dev, dtype=x.dtype),
            like(mu),
            t.detach().clone(),
            spks.detach().clone(),
            like(cond),
        ]
        sx, smask, smu, st, sspks, scond = statics
        cast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if torch.is_autocast_enabled("cuda"):
            cast = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side), cast:
            for _ in range(2):
                static_forward(self.inner, sx, smask, smu, st, sspks, scond, streaming)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), cast:
            out = static_forward(self.inner, sx, smask, smu, st, sspks, scond, streaming)
        self.captures += 1
        return graph, statics, out

    def warm(self, lengths: list[int], dtype: torch.dtype, streaming: tuple[bool, ...] = (True,)) -> None:
        """Capture the graphs for these mel lengths now (at load), so no sentence pays for them."""
        if not self.graphs_on:
            return
        dev = next(self.inner.parameters()).device
        ch = int(self.inner.out_channels)
        spk_dim = ch  # the CFM feeds speaker embeddings projected to the mel width
        for n in sorted({self.padded(k) for k in lengths if 0 < self.padded(k) <= GRAPH_MAX_MELS}):
            for s in streaming:
                key = (n, s, dtype)
                if key in self.graphs:
                    continue
                g = torch.Generator(device="cpu").manual_seed(n)

                def rnd(*shape: int, gen: torch.Generator = g) -> torch.Tensor:
                    return torch.randn(*shape, generator=gen).to(dev, dtype)

                x, mu, cond = rnd(2, ch, n), rnd(2, ch, n), rnd(2, ch, n)
                self.graphs[key] = self._capture(key, x, mu, rnd(2), rnd(2, spk_dim), cond)


def install(
    flow: Any, graphs: bool = True, bucket: int = BUCKET_MELS, compile: bool = False
) -> GraphEstimator:
    """Put a GraphEstimator in front of `flow.decoder.estimator` (once); returns it."""
    current = flow.decoder.estimator
    if isinstance(current, GraphEstimator) and current.compiled == (compile and current.graphs_on):
        return current
    wrapper = GraphEstimator(current, graphs=graphs, bucket=bucket, compile=compile)
    flow.decoder.estimator = wrapper
    return wrapper
