"""The translate node's process entry (`stream-tts node translate`): llama.cpp's shared
libraries are loaded before pyzmq's, then the node runs.

Measured on the H200 machine (llama-cpp-python 0.3.36 built with CUDA there, pyzmq 27.3's
manylinux wheel): with `zmq` imported first, the first model load segfaults inside llama.cpp,
with the model on the GPU or on the CPU; with `llama_cpp` imported first, the same load runs
(bench/results/gpu-notes.md). nodes/translate/node.py itself stays light to import (the doctor reads
its settings without loading llama.cpp)."""

from __future__ import annotations

import contextlib


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(ImportError):  # missing: the engine says so when it loads the model
        import llama_cpp  # noqa: F401

    from nodes.translate.node import main as run_node

    return run_node(argv)
