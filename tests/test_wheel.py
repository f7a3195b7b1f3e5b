"""A wheel built from this tree is a working stream-tts: it carries every data file the code
reads (the kana word list, the model manifest, supervisord.conf), and an installed copy, run
from outside the checkout, reads English words right and speaks a sentence through the tiny
models under its own supervisord."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_for, write_config

pytestmark = pytest.mark.slow

DATA_FILES = (
    "nodes/synthesize/kana/words.tsv",
    "models/manifest.toml",
    "stream_tts/supervisord.conf",
    "stream_tts/eval/data/wmt24pp_en-ja.jsonl",
    "stream_tts/eval/data/coding_en-ja.jsonl",
    "stream_tts/eval/data/README.md",
    "stream_tts/eval/data/LICENSE-Apache-2.0.txt",
)


def build_wheel(out: Path) -> Path:
    """`pip wheel` of a copy of the tree (tracked and new files, as a clean clone would have them),
    so the build leaves nothing in the checkout."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    src = out / "src"
    for name in files:
        path = REPO / name
        if path.is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / name)  # follows the symlink: supervisord.conf's content
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("stream_tts-*.whl"))


def fresh_venv(root: Path, wheel: Path) -> Path:
    """A new venv holding only the wheel; the engines' packages (torch, llama.cpp, ...) are seen
    through a .pth line to this venv's site-packages, not reinstalled."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [str(root / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (root / "bin/stream-tts").write_text(
        f"#!{root / 'bin/python'}\nimport sys\nfrom stream_tts.cli import main\nsys.exit(main())\n"
    )
    (root / "bin/stream-tts").chmod(0o755)
    return root


def test_the_wheel_carries_every_data_file_and_an_installed_copy_speaks(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA_FILES) <= names, set(DATA_FILES) - names
    assert (REPO / "supervisord.conf").read_bytes() == zipfile.ZipFile(wheel).read(
        "stream_tts/supervisord.conf"
    )

    venv = fresh_venv(tmp_path / "venv", wheel)
    work = tmp_path / "elsewhere"  # not the checkout: nothing of it is importable from here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_TTS_", "PYTHON"))}
    env["HOME"] = str(tmp_path / "home")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin/stream-tts"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    where = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import nodes.synthesize.kana.english as m, stream_tts; print(m.__file__)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the installed copy, not the repo

    kana = run("kana", "GitHubにpushしました。")
    assert kana.returncode == 0, kana.stderr
    assert "プッシュ" in kana.stdout and "ギットハブ" in kana.stdout, kana.stdout  # from words.tsv
    assert "push" not in kana.stdout.lower()

    data = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", data)
    up = run("up", "--tiny", "--config", str(config), "--data-dir", str(data))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        said = run("say", "--config", str(config), "--stream", "wheel", "The installed copy speaks.")
        assert said.returncode == 0, said.stderr
        played = data / "played.jsonl"

        def heard() -> bool:
            lines = played.read_text().splitlines() if played.exists() else []
            return any(json.loads(ln).get("stream") == "wheel" for ln in lines)

        assert wait_for(heard, 120), (data / "log").iterdir() and run(
            "status", "--config", str(config)
        ).stdout
        conf = (data / "supervisord.conf").read_text()
        assert f"{venv / 'bin/python'} -m stream_tts.cli node ingest" in conf  # the installed python
    finally:
        run("down", "--config", str(config), "--data-dir", str(data), timeout=60)
