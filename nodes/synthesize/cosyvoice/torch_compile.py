"""torch.compile of modules in place before a CUDA-graph capture, and its undo.

Why in place: the graphed code (the flow decoder's forward, the LM trunk) calls its blocks as
modules, so compiling each block's `forward` is the one change that reaches every call. Why an
undo: a compiler that fails on a user's machine (no Triton, an op inductor cannot lower) must
cost the speed-up only, not the graphs: the engine undoes the compile and captures again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

BACKEND: str | Callable[..., Any] = "inductor"  # tests put a failing compiler here


def compile_in_place(modules: Iterable[torch.nn.Module]) -> None:
    """Each module's calls go through torch.compile (dynamic shapes: one code for all lengths)."""
    for m in modules:
        m.compile(dynamic=True, backend=BACKEND)


def uncompile(modules: Iterable[torch.nn.Module]) -> None:
    """Back to the plain forward: `nn.Module.compile` keeps its compiled call in this attribute,
    and torch has no public call to drop it."""
    for m in modules:
        m._compiled_call_impl = None
