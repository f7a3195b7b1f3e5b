"""Real-size random Qwen2 GGUFs (the GPU bench's models), at small sizes: exact tensor layout for the
given dims, a real BPE vocabulary from a tiktoken file, llama.cpp loading and running the f16 file,
and the 72B layer replication keeping Q4_K_M's per-layer type mix."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import gguf
import numpy as np
import pytest

from bench.translate_gpu import SCRIPTED_ANSWER, quantize, replicate_layers, use_more_bits
from nodes.translate.llama.engine import LlamaSettings, LlamaTranslator
from nodes.translate.llama.tiny import (
    QWEN25_7B,
    QWEN25_72B,
    Qwen2Dims,
    scripted_rows,
    tiktoken_vocab,
    write_random_qwen2_gguf,
)
from tests.conftest import tiktoken_file

SMALL = Qwen2Dims(256, 3, 4, 2, 512, 4096, name="small-random")


def test_param_counts_are_the_published_ones() -> None:
    assert QWEN25_7B.n_params == 7_615_616_512  # Qwen2.5-7B: 7.61 B
    assert round(QWEN25_72B.n_params / 1e9, 1) == 72.7  # Qwen2.5-72B: 72.7 B


def test_layout_matches_dims_and_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_random_qwen2_gguf(tmp_path / "a.gguf", SMALL, seed=3)
    b = write_random_qwen2_gguf(tmp_path / "b.gguf", SMALL, seed=3)
    c = write_random_qwen2_gguf(tmp_path / "c.gguf", SMALL, seed=4)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
    assert digest[0] == digest[1] != digest[2]
    r = gguf.GGUFReader(a)
    shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}
    assert sum(int(np.prod(s)) for s in shapes.values()) == SMALL.n_params
    assert shapes["token_embd.weight"] == [256, 4096] == shapes["output.weight"]
    assert shapes["blk.2.attn_k.weight"] == [256, 128]  # 2 kv heads of 64
    assert shapes["blk.0.ffn_down.weight"] == [512, 256]
    assert len(r.fields["tokenizer.ggml.tokens"].contents()) == 4096
    w = np.asarray(r.get_tensor(list(shapes).index("blk.1.ffn_up.weight")).data, dtype=np.float32)
    assert 0.015 < float(w.std()) < 0.025 and np.isfinite(w).all()
    tied = write_random_qwen2_gguf(tmp_path / "t.gguf", dataclasses.replace(SMALL, tied=True))
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(tied).tensors}


def test_tiktoken_vocab_gives_real_prompt_lengths_and_llama_cpp_runs_it(tmp_path: Path) -> None:
    vocab = tiktoken_vocab(tiktoken_file())
    tokens, types, merges = vocab
    assert tokens[-3:] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(tokens) == len(types) > 50_000 and len(merges) > 50_000
    model = write_random_qwen2_gguf(
        tmp_path / "m.gguf", dataclasses.replace(SMALL, n_vocab=60_000), vocab=vocab
    )
    engine = LlamaTranslator(LlamaSettings(model=model, max_tokens=8))
    try:
        text = "Let me run the test suite again to make sure nothing else broke."
        n = len(engine.llm.tokenize(text.encode(), add_bos=False))
        assert n <= 16  # ~1 token a word, as a real model's vocabulary gives (bytes would be 65)
        "".join(engine.translate(text))
        assert engine.last_stats.generated_tokens == 8
        assert engine.last_stats.evaluated_tokens < engine.last_stats.prompt_tokens  # system prompt cached
    finally:
        engine.close()


def test_scripted_answer_survives_q4_k_m_and_the_real_engine(tmp_path: Path) -> None:
    """The e2e GPU run's translator: random layers (8 of them, adding their noise), quantized as
    the 7B is, and still every prompt gets the scripted answer, whole, then <|im_end|>."""
    vocab = tiktoken_vocab(tiktoken_file())
    dims = Qwen2Dims(256, 8, 4, 2, 512, 60_000, name="scripted")
    f16 = write_random_qwen2_gguf(tmp_path / "s.gguf", dims, vocab=vocab, answer=SCRIPTED_ANSWER)
    q4 = tmp_path / "s-q4km.gguf"
    quantize(f16, q4, 2)
    # n_gpu_layers=-1 as on the GPU machine: a CPU-only build still runs it on the CPU, where the
    # AMX guard must hold (this VM crashed with SIGILL before it looked at the build)
    engine = LlamaTranslator(LlamaSettings(model=q4, max_tokens=64, n_gpu_layers=-1))
    try:
        for text in ("The tests passed.", "Now I will run the linter on the changed files, then commit."):
            assert "".join(engine.translate(text)) == SCRIPTED_ANSWER
            assert engine.last_stats.generated_tokens == len(SCRIPTED_ANSWER)  # ended by itself
    finally:
        engine.close()
    plain = write_random_qwen2_gguf(tmp_path / "p.gguf", dims, vocab=vocab)
    engine = LlamaTranslator(LlamaSettings(model=plain, max_tokens=24))
    try:
        assert "".join(engine.translate("The tests passed.")) != SCRIPTED_ANSWER
    finally:
        engine.close()


def test_scripted_answer_needs_distinct_single_token_characters() -> None:
    tokens = tiktoken_vocab(tiktoken_file())[0]
    with pytest.raises(ValueError, match="repeats a character"):
        scripted_rows(tokens, "しました", 64, 0)
    with pytest.raises(ValueError, match="not one token"):
        scripted_rows(tokens, "テスト\U0001f600", 64, 0)


@pytest.mark.slow
def test_replicated_layers_take_q4_k_m_types_per_layer(tmp_path: Path) -> None:
    f16 = write_random_qwen2_gguf(tmp_path / "s3.gguf", SMALL)
    q3 = tmp_path / "s3-q4km.gguf"
    quantize(f16, q3, 2)
    out = tmp_path / "s10-q4km.gguf"
    replicate_layers(q3, out, 10, "replicated")
    r = gguf.GGUFReader(out)
    assert int(r.fields["qwen2.block_count"].contents()) == 10
    types = {t.name: t.tensor_type for t in r.tensors}
    assert len(types) == 1 + 12 * 10 + 2
    for i in range(10):
        want = gguf.GGMLQuantizationType.Q6_K if use_more_bits(i, 10) else gguf.GGMLQuantizationType.Q4_K
        assert types[f"blk.{i}.ffn_down.weight"] == want
        assert types[f"blk.{i}.attn_v.weight"] == want
        assert types[f"blk.{i}.ffn_up.weight"] == gguf.GGMLQuantizationType.Q4_K
    src = {t.name: t for t in gguf.GGUFReader(q3).tensors}
    got = {t.name: t for t in r.tensors}
    assert np.array_equal(
        np.asarray(got["blk.9.ffn_down.weight"].data), np.asarray(src["blk.2.ffn_down.weight"].data)
    )
    assert np.array_equal(
        np.asarray(got["blk.4.ffn_down.weight"].data), np.asarray(src["blk.0.ffn_down.weight"].data)
    )
