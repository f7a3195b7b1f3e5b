"""Load a CosyVoice v1 folder (the released CosyVoice-300M-SFT layout) onto the package's modules.

The classes its `cosyvoice.yaml` names (as upstream's examples/libritts/cosyvoice/conf builds
them): `TransformerLM` (a conformer text encoder, then a transformer LM that is also given the
speaker vector), `MaskedDiffWithXvec` (conformer encoder, length regulator, non-causal CFM
decoder), `HiFTGenerator` at 22 050 Hz, and whisper's multilingual tokenizer
(`whisper.tokenizer.get_tokenizer`, 51 866 tokens). Only the sections inference needs are built
(nodes/synthesize/cosyvoice/load.py `build_sections`, shared with CosyVoice2), and the weights load with
strict=True, as upstream's CosyVoiceModel.load does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bus.errors import ModelLoadError
from nodes.synthesize.cosyvoice.layout import V1
from nodes.synthesize.cosyvoice.load import (
    build_sections,
    fingerprint,
    load_hift_weights,
    load_spk2info,
    load_strict,
    pick_device,
    pick_dtype,
    prepare_hift,
    read_state_dict,
)

ENGINE_SECTIONS = ("sample_rate", "llm", "flow", "hift", "get_tokenizer", "allowed_special")


@dataclass
class CosyVoice1:
    """The loaded v1 model: modules in eval mode on `device`, plus what streaming needs to know."""

    llm: Any
    flow: Any
    hift: Any
    tokenizer: Any  # whisper.tokenizer.Tokenizer
    allowed_special: Any  # what the yaml passes to the tokenizer's encode ("all")
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

    def encode(self, text: str) -> list[int]:
        """Text token ids, as upstream's frontend makes them (`allowed_special` from the yaml)."""
        return [int(t) for t in self.tokenizer.encode(text, allowed_special=self.allowed_special)]


def load_cosyvoice1(model_dir: Path, device: str = "auto", dtype: str = "auto") -> CosyVoice1:
    """Build the inference sections of `model_dir`'s cosyvoice.yaml and load its weights strictly."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(
            f"model folder {model_dir} not found (`stream-tts models tiny DIR` writes a tiny one)"
        )
    for name in V1.required:
        if not (model_dir / name).exists():
            raise ModelLoadError(f"{model_dir}: missing {name} (not a CosyVoice-300M-SFT layout)")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    built = build_sections(model_dir, ENGINE_SECTIONS)
    llm, flow, hift = built["llm"], built["flow"], built["hift"]
    load_strict(llm, read_state_dict(model_dir / "llm.pt"), model_dir / "llm.pt")
    load_strict(flow, read_state_dict(model_dir / "flow.pt"), model_dir / "flow.pt")
    load_hift_weights(hift, model_dir)
    if int(built["sample_rate"]) != 22050:
        raise ModelLoadError(f"{model_dir / V1.yaml}: sample_rate {built['sample_rate']}; v1 runs at 22050")
    try:
        tokenizer = built["get_tokenizer"]()
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{model_dir}: the text tokenizer does not load: {exc}") from exc
    prepare_hift(hift)
    for m in (llm, flow, hift):
        m.to(dev).eval()
    if dt != torch.float32:  # the vocoder stays float32, as upstream keeps it
        llm.to(dt)
        flow.to(dt)
    params = {
        "speech_token_size": int(llm.speech_token_size),
        "text_token_size": int(llm.text_embedding.num_embeddings),
        "input_frame_rate": int(flow.input_frame_rate),
        "mel_bins": int(flow.output_size),
    }
    return CosyVoice1(
        llm=llm,
        flow=flow,
        hift=hift,
        tokenizer=tokenizer,
        allowed_special=built["allowed_special"],
        spk2info=load_spk2info(model_dir),
        device=dev,
        dtype=dt,
        sample_rate=int(built["sample_rate"]),
        model_dir=model_dir,
        fingerprint=fingerprint(model_dir),
        params=params,
    )
