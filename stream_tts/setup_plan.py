"""What `make setup` does on this machine: the platform decisions, in one place, testable on Linux.

The Makefile runs this with the system python3 before the venv exists, so: standard library
only, and syntax that a macOS system python3 (3.9) still reads. The branches, all of them:

  macOS, Apple silicon   Homebrew: portaudio cmake ninja python@3.11; llama.cpp built with Metal
                         (-DGGML_METAL=on); torch's default macOS wheel, which carries MPS.
  macOS, Intel           the same packages, CPU only (no Metal build, and no torch wheel for it).
  Linux, NVIDIA GPU      apt packages; llama.cpp built with CUDA (-DGGML_CUDA=on) when nvcc is
                         there (else CPU, saying how to get CUDA); torch from PyPI (a CUDA build).
  Linux, no GPU          apt packages; llama.cpp's default CPU build; torch's CPU build (x86-64:
                         2.13.0+cpu from this machine's pip sources or PyTorch's CPU index).
  anything else          no package manager we know: the list of what to install by hand.

    python3 stream_tts/setup_plan.py FIELD          print one field (cmake_args, torch_spec, llama_spec, ...)
    python3 stream_tts/setup_plan.py describe       every field, one per line
    python3 stream_tts/setup_plan.py system-packages  install what is missing (or say how)
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
TORCH_SPEC = "torch==2.13.0"  # pinned (PyPI's build: CUDA on Linux, MPS on a Mac)
# x86-64 Linux with no NVIDIA GPU: the CPU build (not PyPI's several-GB CUDA one), from the
# machine's own pip sources if they have it, else from PyTorch's CPU index (the Makefile tries both).
# (PyPI's aarch64 Linux wheel is already a CPU build.)
TORCH_CPU_SPEC = "torch==2.13.0+cpu"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Debian: PortAudio for sounddevice, PulseAudio + the ALSA pulse plugin for the audio tests,
# iproute2 for the multi-host tests, cmake/ninja/g++ to build llama-cpp-python.
APT_PACKAGES = (
    "libportaudio2", "pulseaudio", "pulseaudio-utils", "libasound2-plugins", "alsa-utils", "iproute2",
    "cmake", "ninja-build", "g++", "git",
)  # fmt: skip
# Homebrew: PortAudio for sounddevice, cmake/ninja to build llama-cpp-python (clang comes with
# the Xcode command line tools), and the Python the venv is made from.
BREW_PACKAGES = ("portaudio", "cmake", "ninja", "python@3.11")
APT_INSTALL = " ".join(
    (
        "apt-get update -qq &&",
        "DEBIAN_FRONTEND=noninteractive apt-get install",
        "-y -qq --no-install-recommends {pkgs}",
    )
)


@dataclass(frozen=True)
class Plan:
    platform: str  # "macos" | "linux" | "other"
    package_manager: str | None  # "brew" | "apt" | None (install by hand)
    packages: tuple[str, ...]
    check_cmd: str  # shell template for one package, {pkg}; exit 0 = installed
    install_cmd: str  # shell template for the missing ones, {pkgs}; "" = cannot install here
    manual_hint: str  # what to tell a user who must install them (not root, no manager)
    gpu: str  # "metal" | "cuda" | "cpu": what llama.cpp and torch will use
    cmake_args: str  # CMAKE_ARGS for building llama-cpp-python ("" = its default build)
    torch_spec: str
    torch_index: str = ""  # an extra index for torch_spec when the machine's pip sources lack it
    python_hint: str = "install Python 3.11"  # how to get the python3.11 the venv is made from
    notes: tuple[str, ...] = field(default_factory=tuple)


def plan(
    system: str,
    machine: str,
    has_nvidia: bool,
    is_root: bool,
    has_nvcc: bool = True,
    has_apt: bool = True,
    has_brew: bool = True,
) -> Plan:
    """The decisions for one machine (platform.system(), platform.machine(), nvidia-smi, root)."""
    notes = []
    if system == "Darwin":
        apple = machine in ("arm64", "aarch64")
        if not apple:
            notes.append("Intel Mac: no Metal build and no current torch wheel; Apple silicon is supported")
        if not has_brew:
            notes.append("Homebrew is missing: install it from https://brew.sh, then run make setup again")
        return Plan(
            platform="macos",
            package_manager="brew" if has_brew else None,
            packages=BREW_PACKAGES,
            check_cmd="brew list --versions {pkg} >/dev/null 2>&1",
            # Homebrew refuses to run as root, so root or not, it is the same command
            install_cmd="brew install {pkgs}" if has_brew else "",
            manual_hint="brew install {pkgs}",
            gpu="metal" if apple else "cpu",
            cmake_args="-DGGML_METAL=on" if apple else "",
            torch_spec=TORCH_SPEC,
            python_hint="brew install python@3.11 (make setup installs it once Homebrew is there)",
            notes=tuple(notes),
        )
    if system == "Linux":
        cuda = has_nvidia and has_nvcc
        cpu_x86 = not has_nvidia and machine in ("x86_64", "AMD64", "amd64")
        if has_nvidia and not has_nvcc:
            notes.append(
                "NVIDIA GPU found but no nvcc: llama.cpp is built for the CPU. Install the CUDA toolkit "
                "and run `make setup` again (after `rm .venv/.setup-done`) to translate on the GPU"
            )
        apt = APT_INSTALL
        return Plan(
            platform="linux",
            package_manager="apt" if has_apt else None,
            packages=APT_PACKAGES,
            check_cmd="dpkg -s {pkg} >/dev/null 2>&1",
            install_cmd=apt if (has_apt and is_root) else "",
            manual_hint="sudo apt-get install {pkgs}"
            if has_apt
            else "install with your package manager: {pkgs}",
            gpu="cuda" if cuda else "cpu",
            cmake_args="-DGGML_CUDA=on" if cuda else "",
            torch_spec=TORCH_CPU_SPEC if cpu_x86 else TORCH_SPEC,
            torch_index=TORCH_CPU_INDEX if cpu_x86 else "",
            python_hint="sudo apt-get install python3.11 python3.11-venv (Debian 12), or pyenv install 3.11"
            if has_apt
            else "install Python 3.11 with your package manager or pyenv",
            notes=tuple(notes),
        )
    return Plan(
        platform="other",
        package_manager=None,
        packages=APT_PACKAGES,
        check_cmd="false",
        install_cmd="",
        manual_hint=f"unsupported system {system!r}: install the equivalents of: {{pkgs}}",
        gpu="cpu",
        cmake_args="",
        torch_spec=TORCH_SPEC,
        notes=(f"{system} is not supported: macOS and Linux are",),
    )


def this_machine() -> Plan:
    return plan(
        system=platform.system(),
        machine=platform.machine(),
        has_nvidia=shutil.which("nvidia-smi") is not None,
        is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
        has_nvcc=shutil.which("nvcc") is not None or Path("/usr/local/cuda/bin/nvcc").exists(),
        has_apt=shutil.which("dpkg") is not None and shutil.which("apt-get") is not None,
        has_brew=shutil.which("brew") is not None,
    )


def llama_spec(pyproject: Path = PYPROJECT) -> str:
    """llama-cpp-python's pin, read from pyproject.toml (one place for the version)."""
    m = re.search(r'"(llama-cpp-python==[^"]+)"', pyproject.read_text(encoding="utf-8"))
    if not m:
        raise SystemExit("pyproject.toml pins no llama-cpp-python==VERSION")
    return m.group(1)


def install_system_packages(p: Plan) -> int:
    """Install the missing system packages, or say exactly how to (never fails the setup)."""
    for note in p.notes:
        print(f"!! {note}")
    missing = [pkg for pkg in p.packages if subprocess.call(p.check_cmd.format(pkg=pkg), shell=True) != 0]
    if not missing:
        print("==> system packages present")
        return 0
    pkgs = " ".join(missing)
    if not p.install_cmd:
        print(f"!! missing system packages: {pkgs}  (run: {p.manual_hint.format(pkgs=pkgs)})")
        return 0
    print(f"==> {p.package_manager} install {pkgs}")
    cmd = p.install_cmd.format(pkgs=pkgs)
    rc = subprocess.call(cmd + (" >/dev/null" if p.package_manager == "apt" else ""), shell=True)
    if rc != 0:
        print(f"!! `{cmd}` failed ({rc}); install them by hand: {p.manual_hint.format(pkgs=pkgs)}")
    return 0


def main(argv: list) -> int:
    p = this_machine()
    if not argv or argv[0] == "describe":
        for key, value in asdict(p).items():
            print(f"{key}: {' '.join(value) if isinstance(value, tuple) else value}")
        print(f"llama_spec: {llama_spec()}")
        return 0
    what = argv[0]
    if what == "system-packages":
        return install_system_packages(p)
    if what == "llama_spec":
        print(llama_spec())
        return 0
    if what not in asdict(p):
        print(f"setup_plan: unknown field {what!r}", file=sys.stderr)
        return 2
    value = asdict(p)[what]
    print(" ".join(value) if isinstance(value, (tuple, list)) else ("" if value is None else value))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
