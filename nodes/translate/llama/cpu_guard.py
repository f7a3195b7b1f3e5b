"""llama.cpp's "extra buffer types" (weight repacking, AMX) on CPUs where they crash.

Measured on this project's x86-64 VMs (CPU flags amx_int8/amx_tile, under a hypervisor): any
quantized GGUF (Q8_0, Q4_K_M) loaded on the CPU segfaults in the first decode, while the same
model with `use_extra_bufts = false` runs. llama-cpp-python's `Llama` takes no argument for it,
so the model parameters llama.cpp starts from are adjusted while one Llama loads.
Setting: [translate] cpu_extra_buffers = "auto" (off on an AMX CPU under a hypervisor when the
model runs on the CPU) | true | false.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def use_extra_buffers(setting: str | bool, n_gpu_layers: int, flags: set[str] | None = None) -> bool:
    """Whether llama.cpp may use its extra CPU buffer types for this load."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ValueError(f'[translate] cpu_extra_buffers must be "auto", true or false, got {setting!r}')
    if n_gpu_layers != 0 or not sys.platform.startswith("linux"):
        return True
    flags = cpu_flags() if flags is None else flags
    return not ({"amx_int8", "amx_tile"} <= flags and "hypervisor" in flags)


@contextlib.contextmanager
def extra_buffers(enabled: bool) -> Iterator[None]:
    """While it is open, every Llama created starts from params with use_extra_bufts = enabled."""
    if enabled:
        yield
        return
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp  # the ctypes module `Llama` takes its defaults from
    original = lib.llama_model_default_params

    def without_extra_buffers():  # type: ignore[no-untyped-def]
        params = original()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        lib.llama_model_default_params = original
