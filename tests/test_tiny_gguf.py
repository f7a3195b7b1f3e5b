"""The tiny qwen2 GGUF: deterministic bytes, the metadata llama.cpp needs, and the real loader and
chat path of llama-cpp-python running on it."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import gguf
import pytest

from nodes.translate.llama.engine import quiet_llama_logs
from nodes.translate.llama.tiny import QWEN25_CHAT_TEMPLATE, SPECIALS, write_tiny_qwen2_gguf


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def field(reader: gguf.GGUFReader, key: str) -> object:
    f = reader.fields[key]
    return f.contents()


def test_same_seed_same_bytes_other_seed_other_bytes_in_well_under_a_second(tmp_path: Path) -> None:
    t0 = time.monotonic()
    a = write_tiny_qwen2_gguf(tmp_path / "a.gguf", seed=0)
    elapsed = time.monotonic() - t0
    b = write_tiny_qwen2_gguf(tmp_path / "b.gguf", seed=0)
    c = write_tiny_qwen2_gguf(tmp_path / "c.gguf", seed=1)
    assert elapsed < 1.0
    assert sha(a) == sha(b) != sha(c)
    assert a.stat().st_size < 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf", "c.gguf"]  # no temp left


def test_metadata_is_what_llama_cpp_needs_for_a_qwen2_chat_model(tmp_path: Path) -> None:
    r = gguf.GGUFReader(write_tiny_qwen2_gguf(tmp_path / "m.gguf"))
    assert field(r, "general.architecture") == "qwen2"
    for key in (
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.layer_norm_rms_epsilon",
    ):
        assert f"qwen2.{key}" in r.fields, key
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "qwen2"
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    assert isinstance(tokens, list) and isinstance(types, list) and isinstance(merges, list)
    assert len(tokens) == len(types) > 256 + len(SPECIALS) and merges
    assert tokens[-3:] == SPECIALS and types[-3:] == [gguf.TokenType.CONTROL] * 3
    assert field(r, "tokenizer.ggml.bos_token_id") == tokens.index("<|endoftext|>")
    assert field(r, "tokenizer.ggml.eos_token_id") == tokens.index("<|im_end|>")
    assert field(r, "tokenizer.chat_template") == QWEN25_CHAT_TEMPLATE
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.attn_q.bias"} <= names


def test_a_split_model_is_written_in_shards_with_split_metadata(tmp_path: Path) -> None:
    first = write_tiny_qwen2_gguf(tmp_path / "m.gguf", shards=3)
    assert first.name == "m-00001-of-00003.gguf"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert field(gguf.GGUFReader(first), "split.count") == 3


def test_llama_cpp_runs_the_models_own_chat_template_and_decodes_japanese(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    quiet_llama_logs()
    path = write_tiny_qwen2_gguf(tmp_path / "m.gguf")
    llm = llama_cpp.Llama(str(path), n_ctx=1024, n_threads=1, verbose=False)
    try:
        assert llm.chat_format == "chat_template.default"  # the GGUF's template, not a guess
        ids = llm.tokenize("<|im_start|>user\n日本語<|im_end|>".encode(), add_bos=False, special=True)
        assert ids[0] == llm.tokenizer_.tokenize(b"<|im_start|>", False, True)[0]
        assert llm.detokenize(ids[1:-1]).decode() == "user\n日本語"  # byte-level BPE round-trips UTF-8
        out = llm.create_chat_completion(
            [{"role": "system", "content": "Translate."}, {"role": "user", "content": "The tests pass now."}],
            temperature=0,
            max_tokens=60,
        )
        text = out["choices"][0]["message"]["content"]
        assert text and any("\u3040" <= ch <= "\u9fff" for ch in text), text
    finally:
        llm.close()
