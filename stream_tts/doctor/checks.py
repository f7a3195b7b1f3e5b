"""The checks `stream-tts doctor` runs, one function each, every one returning `Check` rows.

Nothing here imports torch, llama_cpp or sounddevice: what needs them runs in a subprocess
(`probe`) with a timeout, so a hanging or crashing import (a bad CUDA/Metal build, a missing
PortAudio) becomes a row in the table instead of taking the doctor down with it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bus.config import REPO_ROOT, Config
from stream_tts.setup_plan import Plan

OK, WARN, ERROR = "ok", "warning", "error"
PROBE_TIMEOUT_S = 60.0  # importing torch cold can take tens of seconds
LOAD_TIMEOUT_S = 180.0  # loading a real model from a cold disk
AUDIO_TIMEOUT_S = 20.0
# distribution -> why it matters (doctor's package row names the missing ones)
PACKAGES = {
    "pyzmq": "the bus",
    "msgpack": "the bus",
    "supervisor": "running the nodes",
    "rich": "the CLI",
    "huggingface-hub": "models fetch",
    "llama-cpp-python": "translate",
    "torch": "synthesize",
    "cosyvoice-minicpmo": "synthesize",
    "onnxruntime": "synthesize",
    "pyopenjtalk-plus": "Japanese readings",
    "sounddevice": "playback",
    "soundfile": "playback (WAV files)",
}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warning | error
    detail: str
    fix: str = ""


# ---- subprocess probes -----------------------------------------------------------------------
def probe(code: str, *args: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[dict[str, object] | None, str]:
    """Run `python -c code args` (the code prints one JSON object last): (result, "") or (None, why)."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    if r.returncode < 0:
        return None, f"crashed ({signal.Signals(-r.returncode).name})"
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        return None, (lines[-1].strip() if lines else f"exit code {r.returncode}")[:300]
    try:
        return json.loads(r.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, f"unexpected output: {r.stdout[-200:]!r}"


def check_python() -> Check:
    v = sys.version_info
    where = f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if (v.major, v.minor) != (3, 11):
        return Check("python", ERROR, where, "stream-tts needs Python 3.11: `make setup` makes .venv with it")
    return Check("python", OK, where)


def check_packages() -> Check:
    have, missing = [], []
    for dist, why in PACKAGES.items():
        try:
            have.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{dist} ({why})")
    if missing:
        return Check("packages", ERROR, "missing: " + ", ".join(missing), "make setup")
    return Check("packages", OK, f"all {len(have)} installed: " + ", ".join(have))


LLAMA_PROBE = (
    "import json, llama_cpp; print(json.dumps({'gpu': bool(llama_cpp.llama_supports_gpu_offload()), "
    "'version': llama_cpp.__version__}))"
)
TORCH_PROBE = (
    "import json, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.cuda.is_available(), "
    "'mps': bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available())}))"
)


def check_llama_backend(plan: Plan) -> Check:
    got, why = probe(LLAMA_PROBE)
    if got is None:
        return Check("llama.cpp", ERROR, f"llama_cpp does not import: {why}", "make setup")
    backend = "Metal" if plan.platform == "macos" else "CUDA"
    if got["gpu"]:
        return Check("llama.cpp", OK, f"llama-cpp-python {got['version']}: GPU offload ({backend})")
    if plan.gpu == "cpu":
        return Check("llama.cpp", WARN, f"llama-cpp-python {got['version']}: CPU only (no GPU here)", "")
    rebuild = (
        f'CMAKE_ARGS="{plan.cmake_args}" .venv/bin/pip install --force-reinstall --no-cache-dir --no-deps '
    )
    return Check(
        "llama.cpp",
        WARN,
        f"llama-cpp-python {got['version']} was built without {backend}: translation runs on the CPU",
        rebuild + f'"llama-cpp-python=={got["version"]}"',
    )


def check_torch_backend(plan: Plan) -> Check:
    got, why = probe(TORCH_PROBE)
    if got is None:
        return Check("torch", ERROR, f"torch does not import: {why}", "make setup")
    if got["cuda"] or got["mps"]:
        return Check("torch", OK, f"torch {got['version']}: {'CUDA' if got['cuda'] else 'MPS'}")
    if plan.gpu == "cpu":
        return Check("torch", WARN, f"torch {got['version']}: CPU only (no GPU here)")
    want = "MPS" if plan.platform == "macos" else "CUDA"
    return Check(
        "torch",
        WARN,
        f"torch {got['version']} sees no {want}: synthesis runs on the CPU",
        "install torch's CUDA build (https://pytorch.org)"
        if want == "CUDA"
        else "macOS 12.3+ on Apple silicon",
    )


# ---- models ----------------------------------------------------------------------------------
TRANSLATOR_LOAD = (
    "import json, sys\nfrom llama_cpp import Llama\n"
    "llm = Llama(model_path=sys.argv[1], n_ctx=256, n_gpu_layers=0, verbose=False)\n"
    "print(json.dumps({'n_vocab': llm.n_vocab()}))"
)
# loads the model, then resolves the configured voice as the node will (nodes/voices.VoiceBank),
# building nothing: argv = model folder, [synthesize] voice, data dir
VOICE_LOAD = (
    "import json, sys\nfrom pathlib import Path\nfrom bus.errors import EngineError\n"
    "from nodes.synthesize.cosyvoice.factory import load_model\n"
    "from nodes.synthesize.cosyvoice.voices import VoiceBank, voices_dir\n"
    "m = load_model(Path(sys.argv[1]), device='cpu')\n"
    "bank = VoiceBank(m.spk2info, voices_dir(Path(sys.argv[3])), m.fingerprint, m.model_dir)\n"
    "try:\n    voice, why = bank.describe(sys.argv[2]), ''\n"
    "except EngineError as exc:\n    voice, why = '', str(exc)\n"
    "print(json.dumps({'sample_rate': m.sample_rate, 'speakers': len(m.spk2info), 'voice': voice, "
    "'voice_error': why}))"
)
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def model_paths(config: Config) -> tuple[Path, Path]:
    """(the GGUF translate loads, the folder synthesize loads), by the nodes' own settings code."""
    from nodes.synthesize.settings import SynthSettings
    from nodes.translate.settings import translate_settings

    gguf = translate_settings(config.section("translate"), config.base_dir)[0].model
    voice = config.path_setting("synthesize", "model_dir", SynthSettings.model_dir)
    return Path(gguf), voice


def _fetch_fix(default: bool, key: str, config: Config) -> str:
    if default:
        return "stream-tts models fetch   (or try the plumbing on tiny models: stream-tts up --tiny)"
    return f"point {key} in {config.path or 'your config'} at the model, or `stream-tts models fetch`"


def check_translator(config: Config, path: Path, timeout_s: float) -> Check:
    default = "model" not in config.section("translate")
    if not path.is_file():
        return Check(
            "translator model", ERROR, f"not found: {path}", _fetch_fix(default, "[translate] model", config)
        )
    m = _SHARD.search(path.name)
    if m:
        shards = [
            path.with_name(_SHARD.sub(f"-{i:05d}-of-{m.group(2)}.gguf", path.name))
            for i in range(1, int(m.group(2)) + 1)
        ]
        absent = [s.name for s in shards if not s.is_file()]
        if absent:
            return Check(
                "translator model",
                ERROR,
                f"shards missing beside {path.name}: {', '.join(absent)}",
                _fetch_fix(default, "[translate] model", config),
            )
    t0 = time.monotonic()
    got, why = probe(TRANSLATOR_LOAD, str(path), timeout_s=timeout_s)
    if got is None:
        return Check(
            "translator model",
            ERROR,
            f"{path.name} does not load: {why}",
            _fetch_fix(default, "[translate] model", config),
        )
    return Check(
        "translator model", OK, f"{path} loads ({time.monotonic() - t0:.1f} s, vocab {got['n_vocab']})"
    )


def check_voice(config: Config, folder: Path, timeout_s: float) -> Check | list[Check]:
    """The voice model row, then (once it loads) the voice row: what `[synthesize] voice` speaks as,
    an error when there is none (no speaker, none configured, none stored, no default prompt)."""
    default = "model_dir" not in config.section("synthesize")
    fix = _fetch_fix(default, "[synthesize] model_dir", config)
    if not folder.is_dir():
        return Check("voice model", ERROR, f"not found: {folder}", fix)
    from nodes.synthesize.cosyvoice.layout import layout_of

    layout = layout_of(folder)  # CosyVoice2 or v1, as the folder says
    absent = [f for f in layout.required if not (folder / f).exists()]
    if absent:
        return Check("voice model", ERROR, f"{folder} lacks {', '.join(absent)}", fix)
    t0 = time.monotonic()
    want = str(config.section("synthesize").get("voice", ""))
    got, why = probe(VOICE_LOAD, str(folder), want, str(config.data_dir), timeout_s=timeout_s)
    if got is None:
        return Check("voice model", ERROR, f"{folder.name} does not load: {why}", fix)
    model = Check(
        "voice model",
        OK,
        f"{folder} loads ({layout.name}, {time.monotonic() - t0:.1f} s, {got['sample_rate']} Hz)",
    )
    if got["voice"]:
        return [model, Check("voice", OK, f'[synthesize] voice = "{want}": {got["voice"]}')]
    add = 'stream-tts voices add NAME WAV TEXT, then [synthesize] voice = "NAME"'
    voice_fix = (
        f"stream-tts voices (what is there), or {add}"
        if want
        else f"stream-tts models fetch (the default voice's prompt), or {add}"
    )
    return [model, Check("voice", ERROR, str(got["voice_error"]), voice_fix)]


# ---- audio -----------------------------------------------------------------------------------
AUDIO_PROBE = """
import json, sys
import numpy as np, sounddevice as sd
dev = sys.argv[1] or None
dev = int(dev) if dev and dev.isdigit() else dev
info = sd.query_devices(dev, kind="output")
if sys.argv[2] == "1":  # a 0.4 s tone at 660 Hz, faded in and out: no click
    rate = int(info["default_samplerate"] or 48000)
    t = np.arange(int(rate * 0.4)) / rate
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    sd.play((0.2 * env * np.sin(2 * np.pi * 660 * t)).astype("float32"), rate, device=dev, blocking=True)
print(json.dumps({"name": info["name"], "rate": info["default_samplerate"]}))
"""


def check_audio(config: Config, play: bool) -> Check:
    device = config.section("playback").get("device", "")
    got, why = probe(
        AUDIO_PROBE,
        str(device if device is not None else ""),
        "1" if play else "0",
        timeout_s=AUDIO_TIMEOUT_S,
    )
    if got is None:
        wav = config.data_dir / "wav"
        return Check(
            "audio device",
            WARN,
            f"no usable output device ({why}): playback will write WAV files to {wav}",
            "connect or enable a sound output (macOS: System Settings > Sound; Linux: `pactl info`), "
            "or pick one with [playback] device (`stream-tts devices`)",
        )
    what = "played a tone through" if play else "found"
    return Check("audio device", OK, f"{what} {got['name']} ({got['rate']:.0f} Hz)")
