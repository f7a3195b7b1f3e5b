"""Random-weight CosyVoice2 folders in the released CosyVoice2-0.5B layout.

`write_tiny_cosyvoice2` writes one in seconds for tests and `--tiny` runs: the real module classes
(Qwen2LM on a 2-layer Qwen2, CausalMaskedDiffWithXvec, HiFTGenerator) at shrunk sizes, saved as
the real loader expects and loaded strictly by the same code (nodes/synthesize/cosyvoice/load.py).
`write_random_cosyvoice2(folder, size="real")` writes CosyVoice2-0.5B's real shapes (its LM has
Qwen2-0.5B's: 24 layers, d 896, vocab 151936) for timing on a GPU: timing does not depend on values.

What is in the folder, and what is not real about it:
  cosyvoice2.yaml            the released file's sections and class names (data pipeline included,
                             so the loader's skipping of training sections is exercised)
  llm.pt flow.pt hift.pt     state dicts of those modules (random, deterministic by seed; the LM's
                             eos logit is biased up so utterances end once eos is allowed, at
                             about 3 speech tokens a text token, as a trained model would)
  CosyVoice-BlankEN/         a byte-level BPE of a few hundred tokens (trained here on a small
                             built-in text) as Qwen2TokenizerFast, and a random Qwen2ForCausalLM
  campplus.onnx              fbank (1, T, 80) -> mean |x| over T -> linear -> (1, 192)
  speech_tokenizer_v2.onnx   whisper mel (1, 128, T) + length -> every 4th frame -> linear ->
                             int32 tokens (1, ceil(T/4)) mod 6561
  spk2info.pt                two speakers: {"tiny-a": {"embedding": (1, 192)}, "tiny-b": ...}
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEECH_TOKENS = 6561
EOS_BIAS = 30.0  # llm_decoder bias of the eos logit (see write_random_cosyvoice2)
SPK_DIM = 192
SPEAKERS = ("tiny-a", "tiny-b")
# The built-in text the tiny BPE learns from: kana, common kanji, Latin, digits, punctuation.
_CORPUS = [
    "こんにちは、世界。今日はいい天気ですね！ テストを実行します。ファイルを保存しました？",
    "アイウエオ カキクケコ サシスセソ タチツテト ナニヌネノ ハヒフヘホ マミムメモ ヤユヨ ラリルレロ ワヲン",
    "あいうえお かきくけこ さしすせそ たちつてと なにぬねの はひふへほ まみむめも やゆよ らりるれろ わをん",
    "がぎぐげご ざじずぜぞ だぢづでど ばびぶべぼ ぱぴぷぺぽ ゃゅょっー、。！？「」『』（）…",
    "The quick brown fox jumps over the lazy dog. GitHub JSON README 0123456789 %+-=/:;,.",
    "関数 変数 設定 修正 実行 確認 追加 削除 完了 失敗 成功 日本語 英語 音声 合成",
]


@dataclass(frozen=True)
class Sizes:
    """The knobs that differ between the tiny and the real-shaped folder."""

    qwen_hidden: int
    qwen_layers: int
    qwen_heads: int
    qwen_kv_heads: int
    qwen_ffn: int
    qwen_vocab: int  # 0: just enough for the tiny BPE and CosyVoice's added special tokens
    enc_heads: int
    enc_units: int
    enc_blocks: int
    dec_channels: int
    dec_head_dim: int
    dec_blocks: int
    dec_mid_blocks: int
    dec_heads: int
    hift_channels: int
    hift_resblock_kernels: tuple[int, ...]
    hift_resblock_dilations: tuple[tuple[int, ...], ...]


SIZES = {
    # flow's encoder stays at 512 channels: PreLookaheadLayer and Upsample1D hard-code it
    "tiny": Sizes(64, 2, 4, 2, 128, 0, 2, 64, 1, 32, 16, 1, 1, 2, 32, (3,), ((1, 3),)),
    "real": Sizes(
        896, 24, 14, 2, 4864, 151936, 8, 2048, 6, 256, 64, 4, 12, 8, 512, (3, 7, 11), ((1, 3, 5),) * 3
    ),
}


def write_tiny_cosyvoice2(folder: Path, seed: int = 0) -> Path:
    """A tiny CosyVoice2 folder (~60 MB, a few seconds); returns `folder`."""
    return write_random_cosyvoice2(folder, size="tiny", seed=seed)


def write_random_cosyvoice2(folder: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random-weight CosyVoice2 folder of `size` ("tiny" or "real"), deterministic by seed."""
    import torch

    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    s = SIZES[size]
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    vocab = _write_qwen(folder / "CosyVoice-BlankEN", s, seed)
    (folder / "cosyvoice2.yaml").write_text(_yaml(s), encoding="utf-8")

    from nodes.synthesize.cosyvoice.load import build_sections

    built = build_sections(folder, ("llm", "flow", "hift"))
    gen = torch.Generator().manual_seed(seed)
    write_weights(folder, built, gen, eos=SPEECH_TOKENS)
    write_campplus(folder / "campplus.onnx", seed)
    write_speech_tokenizer(folder / "speech_tokenizer_v2.onnx", seed)
    spk = {name: {"embedding": torch.randn(1, SPK_DIM, generator=gen)} for name in SPEAKERS}
    torch.save(spk, folder / "spk2info.pt")
    (folder / "README.md").write_text(
        f"Random-weight CosyVoice2 ({size}, seed {seed}) written by nodes/synthesize/cosyvoice/tiny.py; "
        f"LM vocab {vocab}. Its speech is noise.\n",
        encoding="utf-8",
    )
    return folder


def _write_qwen(out: Path, s: Sizes, seed: int) -> int:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok: Any = Qwen2TokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None
    )
    tok.save_pretrained(out)
    # CosyVoice's QwenTokenizer adds ~20 special tokens on top; the LM's table must cover them
    vocab = s.qwen_vocab or ((len(tok) + 32 + 63) // 64) * 64
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=s.qwen_hidden,
        intermediate_size=s.qwen_ffn,
        num_hidden_layers=s.qwen_layers,
        num_attention_heads=s.qwen_heads,
        num_key_value_heads=s.qwen_kv_heads,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        eos_token_id=0,
        bos_token_id=0,
    )
    torch.manual_seed(seed)
    lm: Any = Qwen2ForCausalLM(config)
    lm.save_pretrained(out)
    return vocab


def _yaml(s: Sizes) -> str:
    dil = json.dumps([list(d) for d in s.hift_resblock_dilations])
    return f"""# CosyVoice2 layout, random weights (nodes/synthesize/cosyvoice/tiny.py). Sections as released.
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]
__set_seed4: !apply:torch.cuda.manual_seed_all [1986]

sample_rate: 24000
llm_input_size: {s.qwen_hidden}
llm_output_size: {s.qwen_hidden}
spk_embed_dim: {SPK_DIM}
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2

chunk_size: 25 # streaming inference chunk size, in token
num_decoding_left_chunks: -1

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: {SPEECH_TOKENS}
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {SPEECH_TOKENS}
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: {s.enc_heads}
        linear_units: {s.enc_units}
        num_blocks: {s.enc_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        static_chunk_size: !ref <chunk_size>
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
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
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{s.dec_channels}]
            dropout: 0.0
            attention_head_dim: {s.dec_head_dim}
            n_blocks: {s.dec_blocks}
            num_mid_blocks: {s.dec_mid_blocks}
            num_heads: {s.dec_heads}
            act_fn: 'gelu'
            static_chunk_size: !ref <chunk_size> * <token_mel_ratio>
            num_decoding_left_chunks: !ref <num_decoding_left_chunks>

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s.hift_channels}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: {list(s.hift_resblock_kernels)}
    resblock_dilation_sizes: {dil}
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s.hift_channels}

# processor functions (training data pipeline: never built by stream-tts)
parquet_opener: !name:cosyvoice.dataset.processor.parquet_opener
get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'
tokenize: !name:cosyvoice.dataset.processor.tokenize
    get_tokenizer: !ref <get_tokenizer>
    allowed_special: !ref <allowed_special>
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False
compute_fbank: !name:cosyvoice.dataset.processor.compute_fbank
    feat_extractor: !ref <feat_extractor>
    token_mel_ratio: 2
data_pipeline: [
    !ref <parquet_opener>,
    !ref <tokenize>,
    !ref <compute_fbank>,
]

train_conf:
    optim: adam
    max_epoch: 200
"""


def write_weights(
    folder: Path, built: dict[str, Any], gen: Any, eos: int, eos_bias: float = EOS_BIAS
) -> None:
    """llm.pt, flow.pt, hift.pt of the built modules with random weights drawn from `gen` (every
    version's tiny builder): the yaml's constructors reseed, so the seed must reach every weight.
    A trained LM ends an utterance soon after its text; a random one would (almost) never, so its
    `eos` logit gets `eos_bias` (EOS_BIAS: the likeliest token whenever the protocol allows it)."""
    import torch

    for name in ("llm", "flow", "hift"):
        module = built[name]
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            if name == "llm":
                module.llm_decoder.bias[eos] = eos_bias
        torch.save(module.state_dict(), folder / f"{name}.pt")


def save_onnx(graph: Any, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="stream-tts")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_campplus(path: Path, seed: int) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((80, SPK_DIM)).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [
            helper.make_node("Abs", ["input"], ["mag"]),
            helper.make_node("ReduceMean", ["mag"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["output"]),
        ],
        "campplus_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, SPK_DIM])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    save_onnx(graph, path)


def write_speech_tokenizer(path: Path, seed: int, vocab: int = SPEECH_TOKENS) -> None:
    """whisper mel (1, 128, T) + length -> int32 tokens (1, ceil(T/4)) mod `vocab` (v1: 4096)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed + 1).standard_normal((128, 1)).astype(np.float32)
    init = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([2**62], np.int64), "ends"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
        numpy_helper.from_array(np.array([4], np.int64), "steps"),
        numpy_helper.from_array(np.array([2], np.int64), "squeeze_axes"),
        numpy_helper.from_array(np.array(1000.0, np.float32), "scale"),
        numpy_helper.from_array(np.array(vocab, np.int64), "vocab"),
    ]
    nodes = [
        helper.make_node("Slice", ["feats", "starts", "ends", "axes", "steps"], ["every4"]),
        helper.make_node("Transpose", ["every4"], ["frames"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["frames", "w"], ["proj"]),
        helper.make_node("Squeeze", ["proj", "squeeze_axes"], ["score"]),
        helper.make_node("Abs", ["score"], ["mag"]),
        helper.make_node("Mul", ["mag", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["ids64"], to=TensorProto.INT64),
        helper.make_node("Mod", ["ids64", "vocab"], ["wrapped"]),
        helper.make_node("Cast", ["wrapped"], ["indices"], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes,
        "speech_tokenizer_tiny",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("indices", TensorProto.INT32, [1, "N"])],
        initializer=init,
    )
    save_onnx(graph, path)
