"""CosyVoice2's speech-token sampler (upstream's `ras_sampling`), with two host syncs a token.

Upstream's nucleus step walks the sorted probabilities in a Python loop, comparing a device
tensor with top_p at each of up to top_k entries, then rebuilds the kept entries from a list of
0-d tensors: on a GPU that is ~25-50 host syncs and as many tiny copies per token, ~3 ms on the
H100 around an LM step that replays in ~3 ms (bench/results/ttfa-gpu.md). Here the same rule runs
as tensor ops: softmax, the same stable sort, an exclusive running sum over the first top_k
entries, and the same `multinomial` over the same kept probabilities, so under one seed it draws
the same random numbers and the same tokens as upstream (tests/test_cosyvoice_sampling.py checks
this against upstream's own function). The repetition check counts on the host, where the
decoded tokens already are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

# upstream's defaults; a model's yaml may set others on its `sampling` partial
RAS_DEFAULTS = {"top_p": 0.8, "top_k": 25, "win_size": 10, "tau_r": 0.1}


def ras_settings(sampling: Any) -> dict[str, float] | None:
    """top_p, top_k, win_size, tau_r of a model's `sampling` (a functools.partial of upstream's
    ras_sampling, as cosyvoice2.yaml builds it), or None if it is some other sampler."""
    func = getattr(sampling, "func", sampling)
    if getattr(func, "__name__", "") != "ras_sampling":
        return None
    keywords = getattr(sampling, "keywords", {}) or {}
    return {k: float(keywords.get(k, v)) for k, v in RAS_DEFAULTS.items()}


def ras_sample(
    logp: torch.Tensor,
    decoded: Sequence[int],
    top_p: float = 0.8,
    top_k: float = 25,
    win_size: float = 10,
    tau_r: float = 0.1,
) -> int:
    """One token from 1-D scores, by upstream's rule: nucleus (top_p within top_k), re-drawn from
    the whole distribution when the pick already occurs in the last win_size tokens."""
    probs = logp.softmax(dim=0)
    values, order = probs.sort(descending=True, stable=True)
    k = int(top_k)
    values, order = values[:k], order[:k]
    # upstream keeps entry i while the sum of the entries before it is < top_p (a prefix)
    before = torch.cat([values.new_zeros(1), values[:-1]]).cumsum(dim=0)
    kept = int((before < top_p).sum())  # host sync 1
    token = int(order[values[:kept].multinomial(1, replacement=True)])  # host sync 2
    window = list(decoded[-int(win_size) :]) if int(win_size) > 0 else []
    if window.count(token) >= win_size * tau_r:
        token = int(probs.multinomial(1, replacement=True))
    return token


def sampler_for(llm: Any, top_k: int) -> Callable[[torch.Tensor, list[int]], int]:
    """`(log-probs, decoded so far) -> token` for a loaded CosyVoice2 LM: the tensor version above
    when its sampler is upstream's ras_sampling, else its own sampler called as upstream calls it."""
    settings = ras_settings(llm.sampling)
    if settings is not None:
        return lambda logp, decoded: ras_sample(logp, decoded, **settings)
    return upstream_sampler(llm, top_k)


def upstream_sampler(llm: Any, top_k: int) -> Callable[[torch.Tensor, list[int]], int]:
    """The model's sampler called exactly as upstream's LM calls it (the benches' "before")."""
    return lambda logp, decoded: int(llm.sampling(logp, decoded, top_k).item())
