"""Voices: a model speaker from spk2info by id, or a voice cloned once from a prompt recording.

`stream-tts voices add NAME WAV TEXT` computes what zero-shot cloning needs, once: the speaker
embedding (campplus.onnx on Kaldi fbank of the 16 kHz audio), the prompt speech tokens
(speech_tokenizer_v2.onnx, or _v1 in a CosyVoice v1 folder, on whisper's 128-bin log-mel) and the
prompt mel (the yaml's feat_extractor at the model's rate: 24 kHz, or 22.05 kHz for v1; v2 cuts it
to exactly 2 frames a token, v1 keeps it whole, as upstream's front end does), and stores them
in <data_dir>/voices/NAME.pt with the transcript and an optional instruct text (style, emotion:
CosyVoice2 reads it before <|endofprompt|>). `stream-tts voices` lists stored voices and the model's speakers.
A stored voice remembers which prompt front end made it (fingerprint of the ONNX files) and is
refused by a model with another.

A cross-lingual voice (`--cross-lingual`: a prompt in another language than the text) keeps its
transcript out of the LM, as upstream's inference_cross_lingual does: the LM gets neither prompt
text nor prompt speech tokens, so the prompt's language does not leak into the speech; the flow
still gets the prompt's speech tokens, mel and speaker embedding (the timbre).

The default voice: the released CosyVoice2-0.5B has no speakers, so when `voice = ""` and no
speaker exists, the voice "default" is cloned once, cross-lingually, from DEFAULT_PROMPT in the
model folder (upstream's Mandarin prompt recording, fetched by `stream-tts models fetch`) and
stored beside the others. A stored voice named "default" (`voices add default ...`) replaces it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bus.errors import EngineError
from nodes.synthesize.errors import UnknownVoice, VoiceError

VOICE_FORMAT = "stream-tts-voice/1"
DEFAULT_MODEL_DIR = "models/weights/CosyVoice2-0.5B"  # [synthesize] model_dir
VOICES_DIR = "voices"
PROMPT_MIN_S = 0.5
PROMPT_MAX_S = 30.0  # the speech tokenizer takes at most 30 s
TOKENIZER_RATE_HZ = 16000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_VOICE_NAME = "default"
DEFAULT_PROMPT = "asset/zero_shot_prompt.wav"  # in the model folder; models/manifest.toml fetches it
DEFAULT_PROMPT_TEXT = "希望你以后能够做的比我还好呦。"  # Mandarin: hence cloned cross-lingually
DEFAULT_ORIGIN = "default prompt"  # a stored record's "origin" when the bank made it from the prompt


@dataclass(frozen=True)
class Voice:
    """What the engine conditions on. Tensors live on the CPU; the engine moves them."""

    name: str
    embedding: Any  # torch float (1, 192)
    prompt_text: str = ""
    prompt_text_tokens: tuple[int, ...] | None = None  # spk2info zero-shot entries carry tokens
    prompt_speech_token: Any = None  # torch int32 (1, N) or None
    prompt_speech_feat: Any = None  # torch float (1, 2N, 80) or None
    instruct: str = ""
    source: str = "model"  # "model" (spk2info) or "stored" (voices add, or the default voice)
    cross_lingual: bool = False  # the prompt's text and speech tokens stay out of the LM
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_clone(self) -> bool:
        return self.prompt_speech_token is not None and int(self.prompt_speech_token.shape[1]) > 0


def voices_dir(data_dir: Path) -> Path:
    return Path(data_dir) / VOICES_DIR


class VoiceBank:
    """Resolves a voice name: stored voices first, then the model's spk2info ids. "" (no voice
    configured) is the model's first speaker, else "default" (stored, or cloned now from the
    model folder's DEFAULT_PROMPT), else the first stored voice."""

    def __init__(
        self,
        spk2info: dict[str, dict[str, Any]],
        folder: Path | None,
        fingerprint: str,
        model_dir: Path | None = None,
    ) -> None:
        self.spk2info = spk2info
        self.folder = folder
        self.fingerprint = fingerprint
        self.model_dir = model_dir
        self.default_prompt = Path(model_dir) / DEFAULT_PROMPT if model_dir is not None else None
        self._build_error: VoiceError | None = None  # a failed build is not retried per sentence
        # stored records as read, by (mtime, size): `get` runs for every sentence, before its
        # first chunk, and a torch.load each time is ~1 ms of it; a replaced file is read again
        self._records: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}

    def stored_names(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.pt"))

    def names(self) -> list[str]:
        return [*self.stored_names(), *(n for n in self.spk2info if n not in self.stored_names())]

    def can_build_default(self) -> bool:
        return self.folder is not None and self.default_prompt is not None and self.default_prompt.is_file()

    def choose(self, name: str) -> str:
        """The voice `name` stands for (see the class docstring); UnknownVoice when "" finds none."""
        if name:
            return name
        if self.spk2info:
            return next(iter(self.spk2info))
        stored = self.stored_names()
        if DEFAULT_VOICE_NAME in stored or self.can_build_default():
            return DEFAULT_VOICE_NAME
        if stored:
            return stored[0]
        raise UnknownVoice(
            "no voice given, the model has no speakers (spk2info.pt), no voice is stored and the "
            f"default voice's prompt is not there ({self.default_prompt or DEFAULT_PROMPT}): "
            "fetch it with `stream-tts models fetch`, or add a voice: stream-tts voices add NAME WAV TEXT"
        )

    def get(self, name: str) -> Voice:
        name = self.choose(name)
        path = self.folder / f"{name}.pt" if self.folder is not None else None
        if name == DEFAULT_VOICE_NAME and path is not None and self._default_needs_build(path):
            self._build_default(path)
        if path is not None and path.is_file():
            return voice_from_record(self._record(path), path, self.fingerprint)
        if name in self.spk2info:
            return _from_spk2info(name, self.spk2info[name])
        known = ", ".join(self.names()) or "none"
        raise UnknownVoice(
            f"unknown voice {name!r} (known: {known}; add one: stream-tts voices add NAME WAV TEXT)"
        )

    def describe(self, name: str) -> str:
        """What `name` resolves to, in words, building nothing (for `doctor` and `voices`)."""
        chosen = self.choose(name)
        path = self.folder / f"{chosen}.pt" if self.folder is not None else None
        if chosen == DEFAULT_VOICE_NAME and path is not None and self._default_needs_build(path):
            return f"{chosen}: cloned (cross-lingual) from {self.default_prompt} when synthesize starts"
        v = self.get(chosen)
        if v.source == "model":
            return f"{v.name}: model speaker"
        return f"{v.name}: stored voice{' (cross-lingual)' if v.cross_lingual else ''}"

    def _default_needs_build(self, path: Path) -> bool:
        """No stored "default" yet, or one this bank made for another model's front end."""
        if not self.can_build_default():
            return False
        if not path.is_file():
            return True
        raw = self._record(path)
        return raw.get("origin") == DEFAULT_ORIGIN and raw.get("fingerprint") != self.fingerprint

    def _record(self, path: Path) -> dict[str, Any]:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._records.get(path)
        if cached is None or cached[0] != stamp:
            cached = self._records[path] = (stamp, _read_record(path))
        return cached[1]

    def _build_default(self, path: Path) -> None:
        """Clone "default" from the prompt through the same code as `voices add`, once."""
        if self._build_error is not None:
            raise self._build_error
        assert self.model_dir is not None and self.default_prompt is not None
        try:
            record = make_voice(
                PromptFrontend(self.model_dir),
                DEFAULT_VOICE_NAME,
                self.default_prompt,
                DEFAULT_PROMPT_TEXT,
                cross_lingual=True,
            )
        except EngineError as exc:  # a bad prompt file or front end: say so on every sentence
            why = f"the default voice cannot be made from {self.default_prompt}: {exc}"
            self._build_error = VoiceError(why)
            raise self._build_error from exc
        record["origin"] = DEFAULT_ORIGIN
        save_voice(record, path.parent)


def _from_spk2info(name: str, entry: dict[str, Any]) -> Voice:
    """An SFT speaker ({'embedding'}) or an upstream zero-shot entry (prompt tokens and mel)."""
    import torch

    emb = entry.get("embedding", entry.get("flow_embedding"))
    if not isinstance(emb, torch.Tensor) or emb.numel() == 0:
        raise UnknownVoice(f"speaker {name!r} in spk2info.pt has no embedding")
    text = entry.get("prompt_text")
    tokens = tuple(int(t) for t in text.flatten().tolist()) if isinstance(text, torch.Tensor) else None
    return Voice(
        name=name,
        embedding=emb.reshape(1, -1).float(),
        prompt_text_tokens=tokens,
        prompt_speech_token=entry.get("flow_prompt_speech_token"),
        prompt_speech_feat=entry.get("prompt_speech_feat"),
        source="model",
    )


def _read_record(path: Path) -> dict[str, Any]:
    import torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VoiceError(f"{path}: not a stored voice ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != VOICE_FORMAT:
        raise VoiceError(f"{path}: not a {VOICE_FORMAT} file")
    return raw


def load_voice(path: Path, fingerprint: str | None = None) -> Voice:
    return voice_from_record(_read_record(path), path, fingerprint)


def voice_from_record(raw: dict[str, Any], path: Path, fingerprint: str | None = None) -> Voice:
    if fingerprint is not None and raw.get("fingerprint") != fingerprint:
        raise VoiceError(
            f"voice {path.stem!r} was made with another model's prompt front end; "
            f"add it again with this model (stream-tts voices add)"
        )
    return Voice(
        name=str(raw["name"]),
        embedding=raw["embedding"],
        prompt_text=str(raw["prompt_text"]),
        prompt_speech_token=raw["prompt_speech_token"],
        prompt_speech_feat=raw["prompt_speech_feat"],
        instruct=str(raw.get("instruct", "")),
        source="stored",
        cross_lingual=bool(raw.get("cross_lingual", False)),
        extra={"seconds": raw.get("seconds"), "created": raw.get("created"), "origin": raw.get("origin")},
    )


class PromptFrontend:
    """The three prompt extractors of a model folder (no LM, flow or vocoder is loaded)."""

    def __init__(self, model_dir: Path) -> None:
        import onnxruntime

        from nodes.synthesize.cosyvoice.layout import layout_of
        from nodes.synthesize.cosyvoice.load import VOICE_SECTIONS, build_sections, fingerprint

        self.model_dir = Path(model_dir)
        layout = layout_of(self.model_dir)
        self.mels_per_token = layout.prompt_mels_per_token  # 0: the mel is kept whole (v1)
        self.fingerprint = fingerprint(self.model_dir)
        built = build_sections(self.model_dir, VOICE_SECTIONS)
        self.sample_rate = int(built["sample_rate"])
        self.feat_extractor = built["feat_extractor"]
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        self.campplus = onnxruntime.InferenceSession(
            str(self.model_dir / "campplus.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = onnxruntime.InferenceSession(
            str(self.model_dir / layout.speech_tokenizer),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
        )

    def embedding(self, speech_16k: np.ndarray) -> np.ndarray:
        """(1, 192): campplus on mean-normalised 80-bin Kaldi fbank (dither 0), as upstream."""
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0
        opts.frame_opts.samp_freq = TOKENIZER_RATE_HZ
        opts.mel_opts.num_bins = 80
        fbank = knf.OnlineFbank(opts)
        fbank.accept_waveform(TOKENIZER_RATE_HZ, speech_16k.tolist())
        fbank.input_finished()
        feat = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32)
        feat -= feat.mean(axis=0, keepdims=True)
        inp = self.campplus.get_inputs()[0].name
        return np.asarray(self.campplus.run(None, {inp: feat[None]})[0], dtype=np.float32).reshape(1, -1)

    def speech_tokens(self, speech_16k: np.ndarray) -> np.ndarray:
        """(N,) int32: the speech tokenizer on whisper's 128-bin log-mel."""
        import torch
        import whisper

        mel = whisper.log_mel_spectrogram(torch.from_numpy(speech_16k)[None], n_mels=128).numpy()
        a, b = (i.name for i in self.tokenizer.get_inputs())
        out = self.tokenizer.run(None, {a: mel, b: np.array([mel.shape[2]], dtype=np.int32)})[0]
        return np.asarray(out, dtype=np.int32).reshape(-1)

    def mel(self, speech: np.ndarray) -> np.ndarray:
        """(T, 80) at the model's rate: the yaml's feat_extractor."""
        import matcha.utils.audio as matcha_audio
        import torch

        # matcha keeps its mel basis and window by fmax and device only, not by n_fft: a process
        # that made a CosyVoice2 mel (n_fft 1920) would give a v1 one (n_fft 1024) the wrong ones
        matcha_audio.mel_basis.clear()
        matcha_audio.hann_window.clear()
        return self.feat_extractor(torch.from_numpy(speech)[None]).squeeze(0).transpose(0, 1).numpy()


def read_prompt(wav: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:
        raise VoiceError(f"{wav}: cannot read audio ({exc})") from exc
    mono = audio.mean(axis=1)
    seconds = len(mono) / rate
    if not PROMPT_MIN_S <= seconds <= PROMPT_MAX_S:
        raise VoiceError(
            f"{wav}: {seconds:.1f} s of audio; a prompt must be {PROMPT_MIN_S}-{PROMPT_MAX_S:.0f} s"
        )
    if float(np.max(np.abs(mono))) < 1e-4:
        raise VoiceError(f"{wav}: the recording is silent")
    return mono, int(rate)


def make_voice(
    frontend: PromptFrontend,
    name: str,
    wav: Path,
    transcript: str,
    instruct: str = "",
    cross_lingual: bool = False,
) -> dict[str, Any]:
    """The stored form of a cloned voice (see VOICE_FORMAT). A cross-lingual voice needs no
    transcript: the LM never reads it (see the module docstring)."""
    import soxr
    import torch

    if not _NAME.match(name):
        raise VoiceError(f"voice name {name!r}: use letters, digits, '_', '-', '.' (at most 64)")
    if not cross_lingual and not any(c.isalnum() for c in transcript):
        raise VoiceError(
            "the transcript is empty: zero-shot cloning needs the words spoken in the WAV "
            "(or --cross-lingual for a prompt in another language)"
        )
    audio, rate = read_prompt(wav)
    s16 = (
        audio
        if rate == TOKENIZER_RATE_HZ
        else soxr.resample(audio, rate, TOKENIZER_RATE_HZ).astype(np.float32)
    )
    s_model = audio if rate == frontend.sample_rate else soxr.resample(audio, rate, frontend.sample_rate)
    feat = frontend.mel(np.clip(s_model, -1.0, 1.0).astype(np.float32))
    tokens = frontend.speech_tokens(s16)
    k = frontend.mels_per_token  # CosyVoice2's flow wants exactly 2 mel frames a token; v1's any
    n = min(feat.shape[0] // k, tokens.shape[0]) if k else tokens.shape[0]
    frames = k * n if k else feat.shape[0]
    if n < 1:
        raise VoiceError(f"{wav}: too short to give prompt speech tokens")
    return {
        "format": VOICE_FORMAT,
        "name": name,
        "prompt_text": transcript.strip(),
        "instruct": instruct.strip(),
        "cross_lingual": cross_lingual,
        "embedding": torch.from_numpy(frontend.embedding(s16)),
        "prompt_speech_token": torch.from_numpy(tokens[:n].copy())[None],
        "prompt_speech_feat": torch.from_numpy(feat[:frames].copy())[None],
        "sample_rate": frontend.sample_rate,
        "seconds": round(len(audio) / rate, 3),
        "fingerprint": frontend.fingerprint,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def save_voice(record: dict[str, Any], folder: Path) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{record['name']}.pt"
    tmp = out.with_suffix(".tmp")
    torch.save(record, tmp)
    tmp.replace(out)
    return out
