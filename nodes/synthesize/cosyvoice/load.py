"""Load a CosyVoice2 model folder (the released CosyVoice2-0.5B layout) onto the package's modules;
and what both CosyVoice versions' loaders share (nodes/synthesize/cosyvoice/v1/load.py is v1's).

The network classes come from cosyvoice-minicpmo (byte-identical to upstream's); nothing here
uses its `cosyvoice.cli` classes. The folder's `cosyvoice2.yaml` also describes the training data
pipeline with `!name:cosyvoice.dataset.processor.*` tags, and hyperpyyaml imports every module a
tag names, so only the sections inference needs (and the scalars they refer to) are built.
Weights load with strict=True: a folder whose tensors do not fit its yaml is refused.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import logging
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bus.errors import ModelLoadError
from nodes.synthesize.cosyvoice.layout import V2, WEIGHT_FILES, layout_of

YAML_NAME = V2.yaml
QWEN_DIR = "CosyVoice-BlankEN"
ONNX_FILES = V2.onnx_files
__all__ = ["WEIGHT_FILES"]  # re-exported: the weight files are the same in both versions
SPK2INFO = "spk2info.pt"
# What the engine builds from the yaml; hyperpyyaml pulls in what these refer to.
ENGINE_SECTIONS = ("sample_rate", "llm", "flow", "hift", "get_tokenizer")
VOICE_SECTIONS = ("sample_rate", "feat_extractor")

_TOP_KEY = re.compile(r"^([A-Za-z_][\w]*)\s*:")
_REF = re.compile(r"<([A-Za-z_][\w]*)")
log = logging.getLogger("stream_tts")


def reduce_yaml(text: str, keep: Iterable[str], yaml_name: str = YAML_NAME) -> str:
    """The top-level blocks of a hyperpyyaml file named in `keep`, plus every block they refer
    to (`!ref <name>`), plus the seed-setting `__set_seed*` blocks, in file order.

    A block is a top-level `key:` line and every line after it up to the next top-level key
    (indented lines, comments, and the `]` closing a flow list all belong to it)."""
    blocks: dict[str, list[str]] = {}
    order: list[str] = []
    current: str | None = None
    for line in text.splitlines():
        m = _TOP_KEY.match(line)
        if m:
            current = m.group(1)
            order.append(current)
            blocks[current] = [line]
        elif current is not None:
            blocks[current].append(line)
    wanted = [k for k in keep]
    missing = [k for k in wanted if k not in blocks]
    if missing:
        raise ModelLoadError(f"{yaml_name} has no section {', '.join(missing)}")
    chosen: set[str] = {k for k in order if k.startswith("__set_seed")}
    todo = list(wanted)
    while todo:
        key = todo.pop()
        if key in chosen:
            continue
        chosen.add(key)
        for ref in _REF.findall("\n".join(blocks[key])):
            if ref in blocks and ref not in chosen:
                todo.append(ref)
    return "\n".join(line for key in order if key in chosen for line in blocks[key]) + "\n"


def ensure_network_modules() -> None:
    """Make the network modules importable without torchaudio.

    `cosyvoice.llm.llm` takes the stdlib `logging` from `cosyvoice.utils.file_utils`, and
    `cosyvoice.utils.class_utils` (imported by the flow encoder) imports `cosyvoice.cli.model`,
    which takes two TensorRT/vLLM export helpers from it. file_utils imports torchaudio at its top
    (for `load_wav`, which stream-tts never calls: it reads WAVs with soundfile) and no torchaudio
    build matches our CPU torch. When torchaudio is not importable, a stand-in module is
    registered under that name: `logging`, and one stub per function the real file defines, each
    raising if called, so nothing can silently depend on it. With torchaudio, the real module is used."""
    skip_lightning()
    name = "cosyvoice.utils.file_utils"
    if name in sys.modules:
        return
    if importlib.util.find_spec("torchaudio") is not None:
        importlib.import_module(name)
        return
    import cosyvoice.utils as parent

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"{name} not found: is cosyvoice-minicpmo installed (`make setup`)?")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    standin = types.ModuleType(
        name, "stream-tts stand-in for the torchaudio-bound file_utils (see cosyvoice_load)"
    )
    standin.logging = logging  # type: ignore[attr-defined]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            setattr(standin, node.name, _needs_torchaudio(f"{name}.{node.name}"))
    standin.__stream_tts_standin__ = True  # type: ignore[attr-defined]
    sys.modules[name] = standin
    setattr(parent, "file_utils", standin)  # noqa: B010 - a module attribute mypy cannot see


def skip_lightning() -> None:
    """Keep PyTorch Lightning out of the process: ~1.5 s of every synthesize start here.

    CosyVoice's CFM base (`matcha.models.components.flow_matching`) imports
    `matcha.utils.pylogger` for one logger, and both that module and `matcha.utils`' __init__
    import Lightning (upstream wraps the logger's methods to print on rank zero only). So
    `matcha.utils` is registered as its bare package, whose submodules still import, and
    `pylogger` as a stand-in whose `get_pylogger` is the stdlib's `logging.getLogger`."""
    if "matcha.utils" in sys.modules or importlib.util.find_spec("matcha") is None:
        return  # already imported, or no matcha: the model load says what is missing
    import matcha

    package = types.ModuleType("matcha.utils", "matcha.utils without its Lightning imports (cosyvoice_load)")
    package.__path__ = [str(Path(next(iter(matcha.__path__))) / "utils")]
    pylogger = types.ModuleType("matcha.utils.pylogger", "stream-tts stand-in (see skip_lightning)")
    pylogger.get_pylogger = logging.getLogger  # type: ignore[attr-defined]
    package.pylogger = pylogger  # type: ignore[attr-defined]
    sys.modules["matcha.utils"] = package
    sys.modules["matcha.utils.pylogger"] = pylogger
    setattr(matcha, "utils", package)  # noqa: B010 - what the import system does for a submodule


def _needs_torchaudio(qualname: str) -> Callable[..., Any]:
    def stub(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(
            f"{qualname} is not available: torchaudio is not installed (stream-tts does not use it)"
        )

    stub.__qualname__ = qualname
    return stub


def build_sections(model_dir: Path, names: Iterable[str]) -> dict[str, Any]:
    """The named yaml sections of a model folder (its version's yaml: nodes/synthesize/cosyvoice/layout.py),
    built by hyperpyyaml (modules with fresh weights)."""
    yaml_name = layout_of(model_dir).yaml
    yaml_path = model_dir / yaml_name
    if not yaml_path.is_file():
        raise ModelLoadError(f"{model_dir}: no {yaml_name} (is model_dir a CosyVoice2 folder?)")
    reduced = reduce_yaml(yaml_path.read_text(encoding="utf-8"), names, yaml_name)
    ensure_network_modules()
    from hyperpyyaml import load_hyperpyyaml

    try:
        has_qwen = re.search(r"^qwen_pretrain_path\s*:", reduced, re.MULTILINE) is not None
        overrides = {"qwen_pretrain_path": str(model_dir / QWEN_DIR)} if has_qwen else {}
        return dict(load_hyperpyyaml(reduced, overrides=overrides))
    except (ImportError, AttributeError, TypeError, ValueError, OSError, KeyError) as exc:
        raise ModelLoadError(
            f"{yaml_path}: cannot build {', '.join(names)}: {type(exc).__name__}: {exc}"
        ) from exc


def pick_device(setting: str = "auto") -> torch.device:
    """cuda > mps > cpu for "auto", unmeasured (the engine measures mps against the cpu before it
    loads: nodes/synthesize/cosyvoice/device.py); otherwise the named device, refused if it is not there."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(setting)
    except RuntimeError as exc:
        raise ModelLoadError(f"device {setting!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' asked for, but torch sees no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' asked for, but torch sees no MPS backend")
    return device


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    """ "auto": half precision on CUDA (as upstream runs it), float32 elsewhere."""
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if setting not in table:
        raise ModelLoadError(f"dtype {setting!r}: expected auto, {', '.join(table)}")
    return table[setting]


def fingerprint(model_dir: Path) -> str:
    """Identifies the prompt front end (speaker and speech-token models) a stored voice was made
    with: size and first MiB of each ONNX file, cheap even for the real 500 MB tokenizer. The
    speech tokenizer is the folder's version's (v1 and v2 voices are not interchangeable)."""
    h = hashlib.sha256()
    for name in layout_of(model_dir).onnx_files:
        p = model_dir / name
        if not p.is_file():
            raise ModelLoadError(f"{model_dir}: missing {name}")
        h.update(name.encode() + str(p.stat().st_size).encode())
        with p.open("rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


@dataclass
class CosyVoice2:
    """The loaded model: modules in eval mode on `device`, plus what streaming needs to know."""

    llm: Any
    flow: Any
    hift: Any
    tokenizer: Any
    spk2info: dict[str, dict[str, Any]]
    device: torch.device
    dtype: torch.dtype
    sample_rate: int
    model_dir: Path
    fingerprint: str
    params: dict[str, int] = field(default_factory=dict)

    @property
    def samples_per_mel(self) -> int:
        return int(self.hift.f0_upsamp.scale_factor)

    def has_special(self, token: str) -> bool:
        tok = getattr(self.tokenizer, "tokenizer", None)
        return tok is not None and token in tok.get_vocab()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"missing {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelLoadError(f"{path}: not a torch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(sd, dict):
        raise ModelLoadError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def load_strict(module: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:4]
        yaml_name = layout_of(path.parent).yaml
        raise ModelLoadError(f"{path}: weights do not fit {yaml_name}: {' '.join(first)}") from exc


def load_hift_weights(hift: torch.nn.Module, model_dir: Path) -> None:
    """hift.pt into the vocoder built from the yaml, strictly (as upstream loads it)."""
    # a hift.pt saved from a HiFiGan training wrapper carries a "generator." prefix
    sd = {k.removeprefix("generator."): v for k, v in read_state_dict(model_dir / "hift.pt").items()}
    load_strict(hift, sd, model_dir / "hift.pt")


def _sine_gen2_forward(self: Any, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SineGen2.forward (cosyvoice/hifigan/generator.py) with its harmonic numbers kept on the
    device instead of built on the CPU and copied over on every call; nothing else changed."""
    fn = torch.multiply(f0, self.harmonics)
    sine_waves = self._f02sine(fn) * self.sine_amp
    uv = self._f02uv(f0)
    noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
    noise = noise_amp * torch.randn_like(sine_waves)
    sine_waves = sine_waves * uv + noise
    return sine_waves, uv, noise


def prepare_hift(hift: Any) -> None:
    """Make HiFT capturable and cheaper, without changing what it computes. Each call copied two
    small CPU tensors to the device (pageable host copies: syncs, and refused inside a graph
    capture), so both become buffers, which move with the module (not persistent: the weights
    files never held them): the STFT window, and the sine source's harmonic numbers (upstream's
    `torch.FloatTensor([[range(1, n + 2)]])`). Weight norm is a parametrization recomputed from
    (g, v) on every call: it is folded into the weights once (the value it would recompute, so
    outputs are bitwise the same)."""
    import types

    from cosyvoice.hifigan.generator import SineGen2
    from torch.nn.utils import parametrize

    window = hift.stft_window
    del hift.stft_window
    hift.register_buffer("stft_window", window, persistent=False)
    for module in hift.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        if isinstance(module, SineGen2):
            numbers = torch.arange(1, module.harmonic_num + 2, dtype=torch.float32).reshape(1, 1, -1)
            module.register_buffer("harmonics", numbers, persistent=False)
            module.forward = types.MethodType(_sine_gen2_forward, module)


def hift_capturable(hift: Any) -> bool:
    """True when prepare_hift made every sine source capturable (CosyVoice2's SineGen2; the v1
    SineGen builds its phases on the CPU and is left eager)."""
    from cosyvoice.hifigan.generator import SineGen

    prepared = "stft_window" in dict(hift.named_buffers())
    return prepared and not any(isinstance(m, SineGen) for m in hift.modules())


def load_spk2info(model_dir: Path) -> dict[str, dict[str, Any]]:
    p = model_dir / SPK2INFO
    if not p.is_file():
        return {}
    try:
        info = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{p}: cannot read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
        raise ModelLoadError(f"{p}: expected {{speaker id: {{'embedding': tensor, ...}}}}")
    return info


def load_cosyvoice2(model_dir: Path, device: str = "auto", dtype: str = "auto") -> CosyVoice2:
    """Build the inference sections of `model_dir`'s yaml and load its weights strictly."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(
            f"model folder {model_dir} not found (`stream-tts models tiny DIR` writes a tiny one)"
        )
    for name in (*WEIGHT_FILES, QWEN_DIR):
        if not (model_dir / name).exists():
            raise ModelLoadError(f"{model_dir}: missing {name} (not a CosyVoice2-0.5B layout)")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    built = build_sections(model_dir, ENGINE_SECTIONS)
    llm, flow, hift = built["llm"], built["flow"], built["hift"]
    load_strict(llm, read_state_dict(model_dir / "llm.pt"), model_dir / "llm.pt")
    load_strict(flow, read_state_dict(model_dir / "flow.pt"), model_dir / "flow.pt")
    load_hift_weights(hift, model_dir)
    try:
        tokenizer = built["get_tokenizer"]()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir / QWEN_DIR}: tokenizer does not load: {exc}") from exc
    prepare_hift(hift)
    for m in (llm, flow, hift):
        m.to(dev).eval()
    if dt != torch.float32:  # the vocoder stays float32, as upstream keeps it
        llm.to(dt)
        flow.to(dt)
    encoder = flow.encoder
    params = {
        "speech_token_size": int(llm.speech_token_size),
        "mix_text": int(llm.mix_ratio[0]),
        "mix_speech": int(llm.mix_ratio[1]),
        "token_mel_ratio": int(flow.token_mel_ratio),
        "pre_lookahead_len": int(flow.pre_lookahead_len),
        "chunk_size": int(getattr(encoder, "static_chunk_size", 0)),
        "mel_bins": int(flow.output_size),
        "max_mels": int(flow.decoder.rand_noise.shape[2]),
    }
    return CosyVoice2(
        llm=llm,
        flow=flow,
        hift=hift,
        tokenizer=tokenizer,
        spk2info=load_spk2info(model_dir),
        device=dev,
        dtype=dt,
        sample_rate=int(built["sample_rate"]),
        model_dir=model_dir,
        fingerprint=fingerprint(model_dir),
        params=params,
    )
