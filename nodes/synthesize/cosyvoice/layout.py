"""Which CosyVoice a model folder holds, told by its yaml: `cosyvoice2.yaml` (CosyVoice2-0.5B) or
`cosyvoice.yaml` (CosyVoice v1: CosyVoice-300M, -SFT, -Instruct). Everything that differs between
the two folders on disk is here, so the loaders, the voice front end and the doctor ask one place.
No torch: the doctor and `stream-tts voices` read it before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CAMPPLUS = "campplus.onnx"
WEIGHT_FILES = ("llm.pt", "flow.pt", "hift.pt")


@dataclass(frozen=True)
class Layout:
    """What a version's folder holds and how its prompt features are cut."""

    version: int  # 1 or 2
    name: str  # what messages call it
    yaml: str
    speech_tokenizer: str  # the ONNX speech tokenizer a cloned voice's prompt tokens come from
    prompt_mels_per_token: int  # v2 trims a prompt to exactly 2 mel frames a token; 0: no trim (v1)
    extra: tuple[str, ...] = ()  # further files or folders a load needs

    @property
    def onnx_files(self) -> tuple[str, str]:
        """The prompt front end's models (a stored voice's fingerprint is taken over them)."""
        return (CAMPPLUS, self.speech_tokenizer)

    @property
    def required(self) -> tuple[str, ...]:
        """Every file (or folder) a folder of this version must hold to load."""
        return (self.yaml, *WEIGHT_FILES, *self.onnx_files, *self.extra)


V1 = Layout(1, "CosyVoice v1 (CosyVoice-300M-SFT layout)", "cosyvoice.yaml", "speech_tokenizer_v1.onnx", 0)
V2 = Layout(
    2,
    "CosyVoice2 (CosyVoice2-0.5B layout)",
    "cosyvoice2.yaml",
    "speech_tokenizer_v2.onnx",
    2,
    ("CosyVoice-BlankEN",),
)


def layout_of(model_dir: Path) -> Layout:
    """V1 for a folder with `cosyvoice.yaml` and no `cosyvoice2.yaml`; V2 otherwise (also for a
    folder that is not there or holds neither: its load then says what is missing)."""
    model_dir = Path(model_dir)
    if not (model_dir / V2.yaml).is_file() and (model_dir / V1.yaml).is_file():
        return V1
    return V2
