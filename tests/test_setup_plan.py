"""The platform branches of `make setup` (stream_tts/setup_plan.py), checked here on Linux for
every platform."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from stream_tts.setup_plan import (
    APT_PACKAGES,
    BREW_PACKAGES,
    TORCH_CPU_INDEX,
    TORCH_CPU_SPEC,
    TORCH_SPEC,
    llama_spec,
    plan,
    this_machine,
)
from tests.conftest import REPO


def test_apple_silicon_takes_homebrew_portaudio_and_builds_llama_cpp_with_metal() -> None:
    p = plan("Darwin", "arm64", has_nvidia=False, is_root=False)
    assert p.platform == "macos" and p.package_manager == "brew"
    assert "portaudio" in p.packages and "python@3.11" in p.packages
    assert not any(pkg.startswith(("lib", "pulseaudio")) for pkg in p.packages)  # no Debian names
    assert p.install_cmd == "brew install {pkgs}"
    assert p.check_cmd.startswith("brew list --versions {pkg}")
    assert p.cmake_args == "-DGGML_METAL=on" and p.gpu == "metal"
    assert p.torch_spec == TORCH_SPEC  # torch's default macOS wheel carries MPS
    assert p.notes == ()


def test_homebrew_runs_the_same_as_root_or_not_and_its_absence_is_explained() -> None:
    assert plan("Darwin", "arm64", False, is_root=True).install_cmd == "brew install {pkgs}"
    no_brew = plan("Darwin", "arm64", False, False, has_brew=False)
    assert no_brew.install_cmd == "" and no_brew.package_manager is None
    assert any("brew.sh" in n for n in no_brew.notes)
    assert no_brew.manual_hint.format(pkgs="portaudio") == "brew install portaudio"


def test_an_intel_mac_gets_a_cpu_build_and_a_note() -> None:
    p = plan("Darwin", "x86_64", has_nvidia=False, is_root=False)
    assert p.cmake_args == "" and p.gpu == "cpu"
    assert any("Intel Mac" in n for n in p.notes)


def test_linux_with_an_nvidia_gpu_builds_llama_cpp_with_cuda() -> None:
    p = plan("Linux", "x86_64", has_nvidia=True, is_root=True, has_nvcc=True)
    assert p.cmake_args == "-DGGML_CUDA=on" and p.gpu == "cuda"
    assert p.packages == APT_PACKAGES and "libportaudio2" in p.packages
    assert p.install_cmd.startswith("apt-get update")


def test_an_nvidia_gpu_without_nvcc_falls_back_to_cpu_and_says_how_to_get_cuda() -> None:
    p = plan("Linux", "x86_64", has_nvidia=True, is_root=True, has_nvcc=False)
    assert p.cmake_args == "" and p.gpu == "cpu"
    assert any("CUDA toolkit" in n for n in p.notes)


def test_linux_without_a_gpu_keeps_the_default_cpu_build() -> None:
    p = plan("Linux", "x86_64", has_nvidia=False, is_root=True)
    assert p.cmake_args == "" and p.gpu == "cpu" and p.notes == ()
    assert "{pkgs}" in p.install_cmd
    # torch's CPU build, not PyPI's CUDA one: a local version from PyTorch's CPU index
    assert (p.torch_spec, p.torch_index) == (TORCH_CPU_SPEC, TORCH_CPU_INDEX)
    assert TORCH_CPU_SPEC.startswith(TORCH_SPEC + "+")  # pyproject's ==2.13.0 accepts it


def test_torch_comes_from_pypi_with_an_nvidia_gpu_on_arm_and_on_macs() -> None:
    for p in (
        plan("Linux", "x86_64", has_nvidia=True, is_root=True),
        plan("Linux", "aarch64", has_nvidia=False, is_root=True),  # PyPI's aarch64 wheel is CPU
        plan("Darwin", "arm64", has_nvidia=False, is_root=False),
    ):
        assert (p.torch_spec, p.torch_index) == (TORCH_SPEC, ""), p


def test_linux_not_root_gets_the_sudo_line_instead_of_an_install() -> None:
    p = plan("Linux", "aarch64", has_nvidia=False, is_root=False)
    assert p.install_cmd == ""
    assert p.manual_hint.format(pkgs="libportaudio2") == "sudo apt-get install libportaudio2"


def test_an_unknown_system_installs_nothing_and_names_the_packages() -> None:
    p = plan("FreeBSD", "amd64", has_nvidia=False, is_root=True)
    assert p.platform == "other" and p.install_cmd == "" and p.cmake_args == ""
    assert "libportaudio2" in p.manual_hint.format(pkgs=" ".join(p.packages))


def test_llama_spec_is_the_pin_in_pyproject() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert llama_spec() in text and llama_spec().startswith("llama-cpp-python==")


def test_the_cli_prints_fields_the_makefile_reads() -> None:
    def field(name: str) -> str:
        r = subprocess.run(
            [sys.executable, "stream_tts/setup_plan.py", name], cwd=REPO, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.rstrip("\n")

    here = this_machine()  # whatever this machine is: the CLI prints its plan, field by field
    assert field("torch_spec") == here.torch_spec
    assert field("torch_index") == here.torch_index
    assert field("cmake_args") == here.cmake_args
    assert field("llama_spec") == llama_spec()
    assert field("packages").split() == list(here.packages)
    bad = subprocess.run(
        [sys.executable, "stream_tts/setup_plan.py", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2


def test_the_module_uses_only_the_standard_library() -> None:
    """The Makefile runs it with the system python3 before the venv (and its packages) exist."""
    tree = ast.parse((REPO / "stream_tts" / "setup_plan.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names
    assert "python@3.11" in BREW_PACKAGES


def test_make_setup_dry_run_reads_the_plan() -> None:
    r = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "stream_tts/setup_plan.py system-packages" in r.stdout
    assert (
        "stream_tts/setup_plan.py cmake_args" in r.stdout
        and "stream_tts/setup_plan.py torch_spec" in r.stdout
    )
    assert Path(REPO / "Makefile").read_text().count("apt-get") == 0  # the apt line lives in the plan


def test_make_setup_without_python_3_11_says_how_to_get_it(tmp_path: Path) -> None:
    r = subprocess.run(
        ["make", "-B", "setup", "PY=/nonexistent/python3.11", f"VENV={tmp_path / 'venv'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "/nonexistent/python3.11 not found" in r.stdout + r.stderr
    assert this_machine().python_hint in r.stdout + r.stderr
    assert not (tmp_path / "venv").exists()
