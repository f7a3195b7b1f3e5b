"""The tiny qwen2 GGUF: deterministic bytes, the metadata llama.cpp needs, and the real loader and
chat path of llama-cpp-python running on it."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import gguf
import pytest

from nodes.translate.llama.engine import quiet_llama_logs
from nodes.translate.llama.tiny import (
    QWEN3_2507_CHAT_TEMPLATE,
    QWEN3_CHAT_TEMPLATE,
    QWEN25_CHAT_TEMPLATE,
    SPECIALS,
    write_tiny_qwen2_gguf,
    write_tiny_qwen3_gguf,
)


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


# ---- Qwen3: the dense qwen3 and the mixture-of-experts qwen3moe architectures ------------------


@pytest.mark.parametrize("moe", [False, True], ids=["qwen3", "qwen3moe"])
def test_qwen3_metadata_and_tensors_are_what_llama_cpp_requires(tmp_path: Path, moe: bool) -> None:
    arch = "qwen3moe" if moe else "qwen3"
    a = write_tiny_qwen3_gguf(tmp_path / "a.gguf", moe=moe)
    assert sha(a) == sha(write_tiny_qwen3_gguf(tmp_path / "b.gguf", moe=moe))  # same seed, same bytes
    r = gguf.GGUFReader(a)
    assert field(r, "general.architecture") == arch
    assert field(r, "tokenizer.ggml.pre") == "qwen2"  # Qwen3's GGUFs use the qwen2 pre-tokenizer
    # Qwen3's heads are wider than n_embd / n_head: llama.cpp reads their width from key_length
    assert field(r, f"{arch}.attention.key_length") == field(r, f"{arch}.attention.value_length") == 32
    assert 32 * field(r, f"{arch}.attention.head_count") != field(r, f"{arch}.embedding_length")  # type: ignore[operator]
    shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}  # ggml order: (in, out, ...)
    assert shapes["blk.0.attn_q.weight"] == [64, 4 * 32] and shapes["blk.0.attn_output.weight"] == [128, 64]
    assert shapes["blk.1.attn_q_norm.weight"] == shapes["blk.1.attn_k_norm.weight"] == [32]
    assert "blk.0.attn_q.bias" not in shapes  # Qwen3 has no q/k/v biases
    tokens, types = field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    assert tokens[-2:] == ["<think>", "</think>"] and types[-2:] == [gguf.TokenType.USER_DEFINED] * 2
    template = field(r, "tokenizer.chat_template")
    if moe:  # the Instruct-2507 models: no thinking at all
        assert field(r, "qwen3moe.expert_count") == 8 and field(r, "qwen3moe.expert_used_count") == 2
        assert field(r, "qwen3moe.expert_feed_forward_length") == 32
        assert shapes["blk.0.ffn_gate_inp.weight"] == [64, 8]  # the router: n_embd -> n_expert
        assert shapes["blk.0.ffn_gate_exps.weight"] == shapes["blk.0.ffn_up_exps.weight"] == [64, 32, 8]
        assert shapes["blk.0.ffn_down_exps.weight"] == [32, 64, 8]
        assert "blk.0.ffn_gate.weight" not in shapes
        assert template == QWEN3_2507_CHAT_TEMPLATE and "think" not in template
    else:
        assert shapes["blk.0.ffn_gate.weight"] == [64, 128]
        assert template == QWEN3_CHAT_TEMPLATE and "enable_thinking" in template


@pytest.mark.parametrize("moe", [False, True], ids=["qwen3", "qwen3moe"])
def test_llama_cpp_loads_qwen3_and_decodes_japanese_that_ends(tmp_path: Path, moe: bool) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    quiet_llama_logs()
    llm = llama_cpp.Llama(
        str(write_tiny_qwen3_gguf(tmp_path / "m.gguf", moe=moe)), n_ctx=1024, n_threads=1, verbose=False
    )
    try:
        assert llm.metadata["general.architecture"] == ("qwen3moe" if moe else "qwen3")
        think = llm.tokenize(b"<think>", add_bos=False, special=False)
        assert len(think) == 1 and llm.detokenize(think) == b"<think>"  # one token, printed as text
        answers = set()
        for text in ("The tests pass now.", "Next, I will update the documentation.", "Shall I push it?"):
            out = llm.create_chat_completion(
                [{"role": "system", "content": "Translate."}, {"role": "user", "content": text}],
                temperature=0,
                max_tokens=80,
            )
            choice = out["choices"][0]
            said = choice["message"]["content"]
            assert said and any("\u3040" <= ch <= "\u9fff" for ch in said), said
            assert choice["finish_reason"] == "stop", said  # the walk ends by itself
            answers.add(said)
        assert len(answers) > 1  # the prompt steers it
    finally:
        llm.close()


def test_a_qwen3_that_thinks_anyway_writes_think_tags_only_dense_qwen3_can(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    quiet_llama_logs()
    llm = llama_cpp.Llama(
        str(write_tiny_qwen3_gguf(tmp_path / "t.gguf", speaks="think")),
        n_ctx=1024,
        n_threads=1,
        verbose=False,
    )
    try:
        out = llm.create_chat_completion([{"role": "user", "content": "The tests pass now."}], temperature=0)
        said = out["choices"][0]["message"]["content"]
        assert said.startswith("<think>") and said.count("</think>") == 1, said
        assert said.split("</think>")[1].endswith("。")
    finally:
        llm.close()
    with pytest.raises(ValueError, match="speaks"):
        write_tiny_qwen3_gguf(tmp_path / "x.gguf", moe=True, speaks="think")
    with pytest.raises(ValueError, match="speaks"):
        write_tiny_qwen2_gguf(tmp_path / "y.gguf", speaks="think")
