"""Quantized GGUFs on the CPU: llama.cpp's extra buffer types (AMX, repacking) crash on the AMX VMs
this project runs on; the engine turns them off there and the model runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nodes.translate.llama.cpu_guard import cpu_flags, use_extra_buffers
from tests.conftest import REPO

AMX_VM = {"avx2", "amx_int8", "amx_tile", "hypervisor"}


def test_auto_turns_extra_buffers_off_only_for_cpu_inference_on_an_amx_vm() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the rule reads Linux CPU flags")
    assert use_extra_buffers("auto", 0, AMX_VM) is False
    assert use_extra_buffers("auto", -1, AMX_VM) is True  # on the GPU it does not matter
    assert use_extra_buffers("auto", 0, AMX_VM - {"hypervisor"}) is True  # bare metal: AMX works
    assert use_extra_buffers("auto", 0, {"avx2"}) is True
    assert use_extra_buffers(True, 0, AMX_VM) is True and use_extra_buffers(False, 0, set()) is False
    with pytest.raises(ValueError, match="cpu_extra_buffers"):
        use_extra_buffers("sometimes", 0, set())


def test_cpu_flags_reads_proc_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_int8\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_int8"}
    assert cpu_flags(tmp_path / "missing") == set()


QUANTIZED_RUN = """
import sys, pathlib, llama_cpp
from nodes.translate.llama.tiny import write_tiny_qwen2_gguf
from nodes.translate.llama.engine import LlamaSettings, LlamaTranslator
d = pathlib.Path(sys.argv[1])
src = write_tiny_qwen2_gguf(d / "f16.gguf")
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
assert llama_cpp.llama_model_quantize(str(src).encode(), str(d / "q8.gguf").encode(), p) == 0
eng = LlamaTranslator(LlamaSettings(model=d / "q8.gguf", n_gpu_layers=0, max_tokens=8))
print("pieces", len(list(eng.translate("The build passed."))), "extra", eng.cpu_extra_buffers)
"""


def test_a_quantized_model_runs_on_this_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", QUANTIZED_RUN, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode} (139 = segfault): {proc.stderr[-2000:]}"
    assert "pieces" in proc.stdout
    flags = cpu_flags()
    expected = not ({"amx_int8", "amx_tile"} <= flags and "hypervisor" in flags)
    assert f"extra {expected}" in proc.stdout
