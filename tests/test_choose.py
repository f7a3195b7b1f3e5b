"""The translator a machine gets by default (models/choose.py), on fake memory figures: no GPU,
Mac or big machine needed. The figures are the real manifest's file sizes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bus.errors import ModelLoadError
from models.choose import (
    GPU_RESERVED_BYTES,
    Memory,
    choose_translator,
    detect_memory,
    local_choice,
    nvidia_gpus,
)
from models.manifest import load_manifest
from nodes.translate.settings import translate_settings

GiB = 2**30
MANIFEST = load_manifest()


def gpu(total_gib: float, name: str = "NVIDIA GPU") -> list[tuple[str, int]]:
    return [(name, int(total_gib * GiB))]


@pytest.mark.parametrize(
    ("what", "memory", "size"),
    [
        # CUDA: VRAM counts, the voice runs on the same GPU
        (
            "H100 80 GB",
            dict(system="Linux", nvidia=gpu(80, "NVIDIA H100 80GB HBM3"), llama_gpu=True),
            "30b-a3b",
        ),
        ("RTX 5090 32 GB", dict(system="Linux", nvidia=gpu(32), llama_gpu=True), "30b-a3b"),
        (
            "RTX 4090 24 GB: 18.6 GB of weights + the voice do not fit",
            dict(system="Linux", nvidia=gpu(24), llama_gpu=True),
            "7b",
        ),
        (
            "two 16 GB GPUs: llama.cpp spreads the layers",
            dict(system="Linux", nvidia=gpu(16) * 2, llama_gpu=True),
            "30b-a3b",
        ),
        ("RTX 3060 12 GB", dict(system="Linux", nvidia=gpu(12), llama_gpu=True), "7b"),
        # Apple silicon: unified memory, of which Metal gets about 2/3 (<= 16 GB) or 3/4
        (
            "Mac 64 GB",
            dict(system="Darwin", machine="arm64", ram_bytes=64 * GiB, apple_chip="M2 Max"),
            "30b-a3b",
        ),
        (
            "Mac 36 GB",
            dict(system="Darwin", machine="arm64", ram_bytes=36 * GiB, apple_chip="M3 Pro"),
            "30b-a3b",
        ),
        ("Mac 24 GB", dict(system="Darwin", machine="arm64", ram_bytes=24 * GiB, apple_chip="M4"), "7b"),
        ("Mac 16 GB", dict(system="Darwin", machine="arm64", ram_bytes=16 * GiB, apple_chip="M1"), "7b"),
        # CPU only: RAM, less what the OS needs
        ("CPU 64 GB RAM", dict(system="Linux", ram_bytes=64 * GiB, nvidia=[], llama_gpu=False), "30b-a3b"),
        ("CPU 16 GB RAM", dict(system="Linux", ram_bytes=16 * GiB, nvidia=[], llama_gpu=False), "7b"),
        # a CPU-only llama.cpp beside an NVIDIA GPU: the translator lives in RAM, the voice in VRAM
        (
            "CPU llama.cpp, 32 GB RAM, voice on a GPU",
            dict(system="Linux", ram_bytes=32 * GiB, nvidia=gpu(8), llama_gpu=False),
            "30b-a3b",
        ),
    ],
)
def test_the_default_translator_is_the_best_that_fits_beside_the_voice(
    what: str, memory: dict[str, object], size: str
) -> None:
    mem = detect_memory(**memory)  # type: ignore[arg-type]
    choice = choose_translator(MANIFEST, mem)
    assert choice.size == size, (what, choice.reason)
    assert choice.fits
    assert size in choice.reason and mem.describe() in choice.reason  # says what it found and why


def test_what_detect_memory_finds_where() -> None:
    mac = detect_memory(system="Darwin", machine="arm64", ram_bytes=32 * GiB, apple_chip="Apple M2 Max")
    assert (mac.kind, mac.total, mac.budget, mac.device) == ("unified", 32 * GiB, 24 * GiB, "Apple M2 Max")
    cuda = detect_memory(system="Linux", ram_bytes=64 * GiB, nvidia=gpu(80, "H100") * 2, llama_gpu=True)
    assert (cuda.kind, cuda.total, cuda.device) == ("vram", 160 * GiB, "2 x H100")
    assert cuda.budget == 160 * GiB - 2 * GPU_RESERVED_BYTES and cuda.voice_here
    cpu = detect_memory(system="Linux", ram_bytes=10 * GiB, nvidia=gpu(8), llama_gpu=False)
    assert cpu.kind == "ram" and cpu.budget == 8 * GiB and not cpu.voice_here
    intel_mac = detect_memory(
        system="Darwin", machine="x86_64", ram_bytes=16 * GiB, nvidia=[], llama_gpu=False
    )
    assert intel_mac.kind == "ram"


def test_nothing_fits_the_fallback_is_taken_and_says_so() -> None:
    tiny = Memory("ram", 8 * GiB, int(6.4 * GiB), "CPU")
    choice = choose_translator(MANIFEST, tiny)
    assert (choice.size, choice.fits) == ("7b", False)
    assert "may run slowly" in choice.reason


def test_no_voice_leaves_the_translator_all_the_room() -> None:
    m = Memory("vram", 24 * GiB, 23 * GiB, "RTX 4090")
    assert choose_translator(MANIFEST, m).size == "7b"
    assert choose_translator(MANIFEST, m, voice=None).size == "30b-a3b"  # --voice none


def test_nvidia_smi_output_is_read_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    out = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n"

    def fake_run(*_a: object, **_k: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], 0, out, "")

    monkeypatch.setattr("shutil.which", lambda _n: "/usr/bin/nvidia-smi")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvidia_gpus(fake_run) == [("NVIDIA H100 80GB HBM3", 81559 * 2**20)] * 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert len(nvidia_gpus(fake_run)) == 1


def test_a_fetched_translator_is_used_when_the_machines_choice_is_not_here(tmp_path: Path) -> None:
    big = Memory("vram", 80 * GiB, 79 * GiB, "H100")
    assert local_choice(MANIFEST, big, tmp_path).size == "30b-a3b"  # nothing here: the choice (to fetch)
    seven = MANIFEST.translator("7b").local_path(tmp_path)
    seven.write_bytes(b"")
    used = local_choice(MANIFEST, big, tmp_path)
    assert used.size == "7b" and "30b-a3b would suit this machine" in used.reason
    MANIFEST.translator("30b-a3b").local_path(tmp_path).write_bytes(b"")
    assert local_choice(MANIFEST, big, tmp_path).size == "30b-a3b"


def test_translate_size_overrides_the_choice_and_auto_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.choose as choose

    big = Memory("vram", 80 * GiB, 79 * GiB, "H100")
    monkeypatch.setattr(choose, "detect_memory", lambda: big)
    settings, knobs = translate_settings({}, Path("/"))
    assert knobs["size"] in ("30b-a3b", "7b") and knobs["size_reason"]  # auto: chosen (or what is fetched)
    settings, knobs = translate_settings({"size": "qwen3-8b"}, Path("/"))
    assert settings.model.name == "Qwen3-8B-Q4_K_M.gguf" and knobs["size"] == "qwen3-8b"
    assert knobs["size_reason"] == ""
    settings, knobs = translate_settings({"model": "/x/m.gguf"}, Path("/"))
    assert knobs["size"] is None
    with pytest.raises(ModelLoadError, match="qwen3-7b"):
        translate_settings({"size": "qwen3-7b"}, Path("/"))
