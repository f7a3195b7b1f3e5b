"""Load llama.cpp's shared libraries before pyzmq's, in the translate node's process.

Measured on the H200 machine (llama-cpp-python 0.3.36 built with CUDA there, pyzmq 27.3's
manylinux wheel): with `zmq` imported first, the first model load segfaults inside llama.cpp,
with the model on the GPU or on the CPU; with `llama_cpp` imported first, the same load runs.
nodes/translate.py imports this module before anything that imports zmq."""

import contextlib

with contextlib.suppress(ImportError):  # missing: the engine says so when it loads the model
    import llama_cpp  # noqa: F401
