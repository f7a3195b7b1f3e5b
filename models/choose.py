"""Which translator a machine gets when nobody says: the best one that fits the memory it runs in,
beside the voice model.

The memory that counts is where the translator's weights live: the unified memory of an Apple
silicon Mac (shared with the voice and everything else; Metal lets the GPU have about two thirds
of it up to 16 GB and three quarters above), the VRAM of the NVIDIA GPUs when llama.cpp was built
with CUDA (the voice runs on the GPU too), else the RAM (a CPU-only machine). A translator needs
its files' size plus RUNTIME_BYTES (KV cache at n_ctx 4096, llama.cpp's compute buffers); the
voice needs its files' size plus VOICE_RUNTIME_BYTES, in the same memory when both run there.

PREFERENCE is the order in which translators are tried, best first; the first that fits wins, and
the last is the fallback whatever the memory. It holds what the public anchors back
(docs/translate.md): Qwen3-30B-A3B-Instruct-2507 is near GPT-4o on English->Japanese (JP-TL-Bench
9.56 against 9.61) and, with 3.3B parameters active per token, faster per token than a dense 7B;
Qwen2.5-7B is the measured low-latency default. The other sizes are there for whoever measures
them on their own machine (`stream-tts eval translate`) and picks one with `[translate] size`.

Only the standard library; everything the machine is asked is injectable, so tests use fake
figures (tests/test_choose.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.manifest import DEFAULT_TRANSLATOR, DEFAULT_VOICE, WEIGHTS_DIR, Manifest, ManifestError

PREFERENCE = ("30b-a3b", DEFAULT_TRANSLATOR)
RUNTIME_BYTES = 1_500_000_000  # KV cache at n_ctx 4096 (0.2-1.3 GB: 7B to 72B) + compute buffers
VOICE_RUNTIME_BYTES = 1_000_000_000  # CosyVoice2's activations, CUDA graphs, the voice prompt
GPU_RESERVED_BYTES = 1_000_000_000  # per GPU: the CUDA context and the driver's own
RAM_RESERVED_FRACTION = 0.2  # of RAM: the OS and everything else that runs
GB = 1e9


@dataclass(frozen=True)
class Memory:
    """Where the translator runs and how much room it has there."""

    kind: str  # "unified" (Apple silicon), "vram" (NVIDIA GPUs, llama.cpp with CUDA), "ram"
    total: int  # bytes of that memory
    budget: int  # bytes models may use of it
    device: str  # what was found: "Apple M2 Max", "NVIDIA H100 80GB HBM3", "CPU"
    voice_here: bool = True  # the voice model runs in the same memory (not: CUDA voice, CPU llama)

    def describe(self) -> str:
        what = {"unified": "unified memory", "vram": "VRAM", "ram": "RAM"}[self.kind]
        return f"{self.total / GB:.1f} GB of {what} ({self.device})"


@dataclass(frozen=True)
class Choice:
    size: str
    reason: str  # one line: what was found, what the voice takes, what the translator needs
    fits: bool  # False: nothing fits; the fallback is taken anyway (partly on the CPU, or swapping)


def detect_memory(
    system: str | None = None,
    machine: str | None = None,
    ram_bytes: int | None = None,
    nvidia: list[tuple[str, int]] | None = None,
    llama_gpu: bool | None = None,
    apple_chip: str | None = None,
) -> Memory:
    """This machine's memory for the translator; every argument overrides what is asked of the
    machine (platform, RAM, `nvidia-smi`, llama.cpp's build, the Mac's chip name)."""
    system = system or platform.system()
    machine = machine or platform.machine()
    ram = ram_bytes if ram_bytes is not None else physical_ram()
    if system == "Darwin" and machine == "arm64":
        share = 2 / 3 if ram <= 16 * 2**30 else 3 / 4  # Metal's recommended working set, roughly
        chip = (
            apple_chip if apple_chip is not None else _sysctl("machdep.cpu.brand_string") or "Apple silicon"
        )
        return Memory("unified", ram, int(ram * share), chip)
    gpus = nvidia if nvidia is not None else nvidia_gpus()
    if llama_gpu is None:
        llama_gpu = _llama_has_gpu(default=bool(gpus))
    ram_budget = int(ram * (1 - RAM_RESERVED_FRACTION))
    if gpus and llama_gpu:
        total = sum(b for _, b in gpus)
        names = sorted({n for n, _ in gpus})
        device = f"{len(gpus)} x {names[0]}" if len(gpus) > 1 and len(names) == 1 else ", ".join(names)
        return Memory("vram", total, total - GPU_RESERVED_BYTES * len(gpus), device)
    # the translator runs on the CPU; a voice on an NVIDIA GPU takes none of this RAM
    return Memory("ram", ram, ram_budget, f"CPU, {machine}", voice_here=not gpus)


def choose_translator(manifest: Manifest, memory: Memory, voice: str | None = DEFAULT_VOICE) -> Choice:
    """The first translator of PREFERENCE (of those in the manifest) that fits beside the voice;
    the last one when none does."""
    voice_need = voice_bytes(manifest, memory, voice)
    room = memory.budget - voice_need
    sizes = [s for s in PREFERENCE if s in manifest.translators] or list(manifest.translators)[:1]
    if not sizes:
        raise ManifestError("the manifest lists no translator")
    voice_note = f", the voice about {voice_need / GB:.1f} GB of it" if voice_need else ""
    for size in sizes:
        need = translator_need(manifest, size)
        if need <= room:
            better = "the best translator that fits" if size == sizes[0] else f"{sizes[0]} does not fit"
            return Choice(
                size,
                f"{memory.describe()}: models may use about {memory.budget / GB:.1f} GB{voice_note}; "
                f"{size} needs about {need / GB:.1f} GB ({better})",
                True,
            )
    size = sizes[-1]
    return Choice(
        size,
        f"{memory.describe()}: models may use about {memory.budget / GB:.1f} GB{voice_note}; "
        f"even {size} needs about {translator_need(manifest, size) / GB:.1f} GB, so it may run slowly "
        "(layers left on the CPU, or swapping)",
        False,
    )


def voice_bytes(manifest: Manifest, memory: Memory, voice: str | None) -> int:
    """What the voice model takes of the translator's memory (0 when it runs elsewhere)."""
    if not voice or not memory.voice_here:
        return 0
    try:
        v = manifest.voice(voice)
    except ManifestError:
        return 0
    return sum(f.size or 0 for f in (*v.files, *v.extra)) + VOICE_RUNTIME_BYTES


def translator_need(manifest: Manifest, size: str) -> int:
    """Bytes a loaded translator takes: its files and RUNTIME_BYTES."""
    return (manifest.translator(size).total_bytes or 0) + RUNTIME_BYTES


def local_choice(
    manifest: Manifest,
    memory: Memory | None = None,
    weights_dir: Path = WEIGHTS_DIR,
    voice: str | None = DEFAULT_VOICE,
) -> Choice:
    """What the translate node loads when no size is set: the choice for this machine if it has
    been fetched; else the best fetched translator that fits (in PREFERENCE order, then the
    manifest's), so an older download keeps working; else the choice (which is then missing, and
    the node says to fetch it)."""
    memory = memory or detect_memory()
    choice = choose_translator(manifest, memory, voice)
    if manifest.translator(choice.size).local_path(weights_dir).is_file():
        return choice
    here = [s for s, t in manifest.translators.items() if t.local_path(weights_dir).is_file()]
    if not here:
        return choice
    room = memory.budget - voice_bytes(manifest, memory, voice)
    ordered = sorted(here, key=lambda s: PREFERENCE.index(s) if s in PREFERENCE else len(PREFERENCE))
    fitting = [s for s in ordered if translator_need(manifest, s) <= room]
    size = (fitting or ordered)[0]
    return Choice(
        size,
        f"{choice.size} would suit this machine ({choice.reason}) but is not fetched; "
        f"{size} is, so it is used (stream-tts models fetch --translator {choice.size} to change)",
        size in fitting,
    )


# ---- asking the machine ----------------------------------------------------------------------
def physical_ram() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def nvidia_gpus(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> list[tuple[str, int]]:
    """(name, bytes of memory) of each NVIDIA GPU this process may use; [] without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        r = run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    allowed = None if visible is None else {v.strip() for v in visible.split(",") if v.strip()}
    gpus = []
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[2].isdigit() and (allowed is None or parts[0] in allowed):
            gpus.append((parts[1], int(parts[2]) * 2**20))
    return gpus


def _llama_has_gpu(default: bool) -> bool:
    """Whether llama.cpp was built with a GPU backend (without it, the translator runs on the CPU).
    Asked in a child process: llama.cpp's libraries stay out of this one (the doctor, `models`)."""
    if not default:
        return False  # no GPU here: whatever llama.cpp was built with, it runs on the CPU
    code = "import llama_cpp; print(int(llama_cpp.llama_supports_gpu_offload()))"
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return default
    if r.returncode != 0:
        return default  # not installed yet (`models fetch` before setup): assume setup builds it so
    return r.stdout.strip() == "1"


def _sysctl(name: str) -> str:
    try:
        r = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""
