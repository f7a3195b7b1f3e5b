"""Random-weight CosyVoice v1 folders in the released CosyVoice-300M-SFT layout.

`write_tiny_cosyvoice1` writes one in seconds for tests: the classes upstream's v1 `cosyvoice.yaml`
names (TransformerLM with a ConformerEncoder text encoder and a TransformerEncoder LM,
MaskedDiffWithXvec with a ConformerEncoder, InterpolateRegulator and ConditionalCFM over a
ConditionalDecoder, HiFTGenerator at 22 050 Hz) at shrunk sizes, saved as the real loader expects
and loaded strictly by the same code (nodes/synthesize/cosyvoice/v1/load.py).
`write_random_cosyvoice1(folder, size="real")` writes CosyVoice-300M's real shapes (LM: 6 conformer
+ 14 transformer blocks at d 1024), for timing: timing does not depend on values.

What is in the folder, and what is not real about it:
  cosyvoice.yaml             the released file's sections and class names (data pipeline included,
                             so the loader's skipping of training sections is exercised); its text
                             tokenizer is whisper's multilingual one, from the installed openai-whisper
  llm.pt flow.pt hift.pt     state dicts of those modules (random, deterministic by seed; the LM's
                             eos logit is raised so that an utterance ends a few speech tokens per
                             text token after eos is allowed, as a trained model would)
  campplus.onnx              fbank (1, T, 80) -> mean |x| over T -> linear -> (1, 192)
  speech_tokenizer_v1.onnx   whisper mel (1, 128, T) + length -> every 4th frame -> linear ->
                             int32 tokens mod 4096
  spk2info.pt                a few of the real model's speaker names with random embeddings:
                             {"中文女": {"embedding": (1, 192)}, "中文男": ..., "日语男": ...}
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

SPEECH_TOKENS = 4096
TEXT_TOKENS = 51866  # whisper's multilingual vocabulary (100 languages), as the real yaml says
EOS_BIAS = 8.0  # llm_decoder bias of the eos logit (p ~0.4 a step): an utterance ends soon after min_len
SPK_DIM = 192
SPEAKERS = ("中文女", "中文男", "日语男")  # names of the real CosyVoice-300M-SFT's spk2info


@dataclass(frozen=True)
class Sizes:
    """The knobs that differ between the tiny and the real-shaped folder."""

    text_in: int  # text_encoder_input_size
    text_out: int  # the text encoder's output size
    text_heads: int
    text_units: int
    text_blocks: int
    lm: int  # llm_input_size = llm_output_size
    lm_heads: int
    lm_units: int
    lm_blocks: int
    flow_in: int  # the flow's token embedding and encoder input
    flow_heads: int
    flow_units: int
    flow_blocks: int
    dec_channels: int
    dec_head_dim: int
    dec_blocks: int
    dec_mid_blocks: int
    dec_heads: int
    hift_channels: int
    hift_resblock_kernels: tuple[int, ...]
    hift_resblock_dilations: tuple[tuple[int, ...], ...]


SIZES = {
    "tiny": Sizes(32, 64, 2, 64, 1, 64, 2, 128, 2, 64, 2, 64, 1, 32, 16, 1, 1, 2, 32, (3,), ((1, 3),)),
    "real": Sizes(
        512,
        1024,
        16,
        4096,
        6,
        1024,
        16,
        4096,
        14,
        512,
        8,
        2048,
        6,
        256,
        64,
        4,
        12,
        8,
        512,
        (3, 7, 11),
        ((1, 3, 5),) * 3,
    ),
}


def write_tiny_cosyvoice1(folder: Path, seed: int = 0) -> Path:
    """A tiny CosyVoice v1 folder (a few MB, a few seconds); returns `folder`."""
    return write_random_cosyvoice1(folder, size="tiny", seed=seed)


def write_random_cosyvoice1(folder: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random-weight CosyVoice v1 folder of `size` ("tiny" or "real"), deterministic by seed."""
    import torch

    from nodes.synthesize.cosyvoice.load import build_sections
    from nodes.synthesize.cosyvoice.tiny import write_campplus, write_speech_tokenizer, write_weights

    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    s = SIZES[size]
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "cosyvoice.yaml").write_text(_yaml(s), encoding="utf-8")
    built = build_sections(folder, ("llm", "flow", "hift"))
    gen = torch.Generator().manual_seed(seed)
    write_weights(folder, built, gen, eos=SPEECH_TOKENS, eos_bias=EOS_BIAS)
    write_campplus(folder / "campplus.onnx", seed)
    write_speech_tokenizer(folder / "speech_tokenizer_v1.onnx", seed, vocab=SPEECH_TOKENS)
    spk = {name: {"embedding": torch.randn(1, SPK_DIM, generator=gen)} for name in SPEAKERS}
    torch.save(spk, folder / "spk2info.pt")
    (folder / "README.md").write_text(
        f"Random-weight CosyVoice v1 ({size}, seed {seed}) written by nodes/synthesize/cosyvoice/v1/tiny.py. "
        "Its speech is noise.\n",
        encoding="utf-8",
    )
    return folder


def _yaml(s: Sizes) -> str:
    dil = json.dumps([list(d) for d in s.hift_resblock_dilations])
    return f"""# CosyVoice v1 layout, random weights (cosyvoice/v1/tiny.py), sections as released
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]
__set_seed4: !apply:torch.cuda.manual_seed_all [1986]

sample_rate: 22050
text_encoder_input_size: {s.text_in}
llm_input_size: {s.lm}
llm_output_size: {s.lm}
spk_embed_dim: {SPK_DIM}

llm: !new:cosyvoice.llm.llm.TransformerLM
    text_encoder_input_size: !ref <text_encoder_input_size>
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    text_token_size: {TEXT_TOKENS}
    speech_token_size: {SPEECH_TOKENS}
    length_normalized_loss: True
    lsm_weight: 0
    spk_embed_dim: !ref <spk_embed_dim>
    text_encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        input_size: !ref <text_encoder_input_size>
        output_size: {s.text_out}
        attention_heads: {s.text_heads}
        linear_units: {s.text_units}
        num_blocks: {s.text_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.0
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        use_cnn_module: False
        macaron_style: False
        use_dynamic_chunk: False
        use_dynamic_left_chunk: False
        static_chunk_size: 1
    llm: !new:cosyvoice.transformer.encoder.TransformerEncoder
        input_size: !ref <llm_input_size>
        output_size: !ref <llm_output_size>
        attention_heads: {s.lm_heads}
        linear_units: {s.lm_units}
        num_blocks: {s.lm_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.0
        input_layer: 'linear_legacy'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        static_chunk_size: 1
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: {s.flow_in}
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {SPEECH_TOKENS}
    input_frame_rate: 50
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: {s.flow_in}
        attention_heads: {s.flow_heads}
        linear_units: {s.flow_units}
        num_blocks: {s.flow_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: {s.flow_in}
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1, 1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{s.dec_channels}, {s.dec_channels}]
            dropout: 0.0
            attention_head_dim: {s.dec_head_dim}
            n_blocks: {s.dec_blocks}
            num_mid_blocks: {s.dec_mid_blocks}
            num_heads: {s.dec_heads}
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s.hift_channels}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: {list(s.hift_resblock_kernels)}
    resblock_dilation_sizes: {dil}
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s.hift_channels}

# processor functions (training data pipeline: never built by stream-tts)
parquet_opener: !name:cosyvoice.dataset.processor.parquet_opener
get_tokenizer: !name:whisper.tokenizer.get_tokenizer
    multilingual: True
    num_languages: 100
    language: 'en'
    task: 'transcribe'
allowed_special: 'all'
tokenize: !name:cosyvoice.dataset.processor.tokenize
    get_tokenizer: !ref <get_tokenizer>
    allowed_special: !ref <allowed_special>
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 256
    win_size: 1024
    fmin: 0
    fmax: 8000
    center: False
compute_fbank: !name:cosyvoice.dataset.processor.compute_fbank
    feat_extractor: !ref <feat_extractor>
data_pipeline: [
    !ref <parquet_opener>,
    !ref <tokenize>,
    !ref <compute_fbank>,
]

train_conf:
    optim: adam
    max_epoch: 200
"""
