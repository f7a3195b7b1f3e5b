"""The tiny CosyVoice2 folder: the released layout, built in seconds, deterministic by seed, and
loaded strictly by the loader that loads real weights (which refuses what does not fit)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bus.errors import ModelLoadError
from nodes.synthesize.cosyvoice.load import ENGINE_SECTIONS, load_cosyvoice2, reduce_yaml
from nodes.synthesize.cosyvoice.tiny import SPEAKERS, write_tiny_cosyvoice2
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(180)
LAYOUT = [
    "cosyvoice2.yaml",
    "llm.pt",
    "flow.pt",
    "hift.pt",
    "campplus.onnx",
    "speech_tokenizer_v2.onnx",
    "spk2info.pt",
    "CosyVoice-BlankEN/config.json",
    "CosyVoice-BlankEN/model.safetensors",
    "CosyVoice-BlankEN/tokenizer.json",
    "CosyVoice-BlankEN/tokenizer_config.json",
]


def test_tiny_folder_has_the_released_layout(tiny_models: tuple[Path, Path]) -> None:
    cosy = tiny_models[1]
    for name in LAYOUT:
        assert (cosy / name).is_file(), name
    yaml = (cosy / "cosyvoice2.yaml").read_text()
    for cls in (
        "cosyvoice.llm.llm.Qwen2LM",
        "cosyvoice.llm.llm.Qwen2Encoder",
        "CausalMaskedDiffWithXvec",
        "UpsampleConformerEncoder",
        "CausalConditionalCFM",
        "CausalConditionalDecoder",
        "HiFTGenerator",
        "ConvRNNF0Predictor",
        "get_qwen_tokenizer",
        "cosyvoice.dataset.processor",
    ):
        assert cls in yaml
    assert list(torch.load(cosy / "spk2info.pt", weights_only=True)) == list(SPEAKERS)


def test_loader_builds_only_inference_sections(tiny_models: tuple[Path, Path]) -> None:
    text = (tiny_models[1] / "cosyvoice2.yaml").read_text()
    kept = reduce_yaml(text, ENGINE_SECTIONS)
    assert "Qwen2LM" in kept and "HiFTGenerator" in kept and "chunk_size: 25" in kept
    assert "llm_input_size:" in kept and "qwen_pretrain_path:" in kept  # what the sections refer to
    assert "dataset.processor" not in kept and "data_pipeline" not in kept and "train_conf" not in kept
    with pytest.raises(ModelLoadError, match="no section nope"):
        reduce_yaml(text, ["nope"])


def test_loads_strictly_in_a_fresh_process_without_training_modules(tiny_models: tuple[Path, Path]) -> None:
    code = (
        "import sys; from pathlib import Path; from nodes.synthesize.cosyvoice.load import load_cosyvoice2\n"
        f"m = load_cosyvoice2(Path({str(tiny_models[1])!r}))\n"
        "assert 'cosyvoice.dataset.processor' not in sys.modules and 'torchaudio' not in sys.modules\n"
        "assert 'lightning' not in sys.modules, 'PyTorch Lightning was imported'\n"
        "import logging; from matcha.utils.pylogger import get_pylogger\n"
        "assert get_pylogger is logging.getLogger\n"
        "print(m.sample_rate, m.params['chunk_size'], m.samples_per_mel, sorted(m.spk2info))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["24000", "25", "480", "['tiny-a',", "'tiny-b']"]


def test_same_seed_same_weights_other_seed_other_weights(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    t0 = time.monotonic()
    again = write_tiny_cosyvoice2(tmp_path / "again", seed=0)
    assert time.monotonic() - t0 < 30  # seconds, not minutes (~5 s on 2 cores)
    other = write_tiny_cosyvoice2(tmp_path / "other", seed=1)
    for name in ("llm.pt", "flow.pt", "hift.pt"):
        a = torch.load(tiny_models[1] / name, weights_only=True)
        b = torch.load(again / name, weights_only=True)
        c = torch.load(other / name, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert not all(torch.equal(a[k], c[k]) for k in a), name


def test_weights_that_do_not_fit_are_refused(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models[1], broken)
    sd = torch.load(broken / "hift.pt", weights_only=True)
    sd.pop(next(iter(sd)))
    torch.save(sd, broken / "hift.pt")
    with pytest.raises(ModelLoadError, match=r"hift\.pt: weights do not fit"):
        load_cosyvoice2(broken)
    (broken / "llm.pt").unlink()
    with pytest.raises(ModelLoadError, match=r"missing llm\.pt"):
        load_cosyvoice2(broken)
    with pytest.raises(ModelLoadError, match="not found"):
        load_cosyvoice2(tmp_path / "nothing")


def test_the_models_tiny_command_writes_both_models_byte_for_byte_the_same_each_time(
    tmp_path: Path, tiny_models: tuple[Path, Path], tiny_v1: Path
) -> None:
    """The CLI's folder against the session's (built by the same code, same seed, elsewhere)."""

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    r = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "models", "tiny", str(tmp_path / "cli")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "tiny models ready" in r.stderr
    a, b = files(tmp_path / "cli"), files(tiny_models[0].parent)
    assert any(name.endswith(".gguf") for name in a) and any(name.endswith("llm.pt") for name in a)
    assert "tiny-cosyvoice1/cosyvoice.yaml" in a  # and the v1 folder (the session's: tiny_v1)
    assert a.keys() == b.keys()
    assert [name for name in a if a[name] != b[name]] == []  # every file, onnx and tokenizer included
