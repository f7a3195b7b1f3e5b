"""LlamaTranslator on the real llama.cpp with the tiny GGUF: the system prompt's KV state reused
(measured by the engine and cross-checked with llama.cpp's own perf counters), context bounded by
the context window, greedy determinism, split models, and load failures as ModelLoadError; and on
the tiny Qwen3 GGUFs: thinking switched off in the prompt, and taken out of what a model that
thinks anyway says."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from bus.errors import EngineError, ModelLoadError
from nodes.translate.errors import ContextOverflow
from nodes.translate.ja_text import is_japanese
from nodes.translate.llama.engine import LlamaSettings, LlamaTranslator, thinking_mode
from nodes.translate.llama.tiny import (
    QWEN3_2507_CHAT_TEMPLATE,
    QWEN3_CHAT_TEMPLATE,
    write_tiny_qwen2_gguf,
    write_tiny_qwen3_gguf,
)

SENTENCES = [
    "I fixed the bug in ⟦0⟧.",
    "The tests pass now.",
    "Next, I will update the documentation and the changelog.",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_qwen2_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def engine(model: Path, **kw: object) -> LlamaTranslator:
    opts: dict[str, object] = {"n_ctx": 2048, "n_threads": 1, "max_tokens": 48, **kw}
    return LlamaTranslator(LlamaSettings(model=model, **opts))  # type: ignore[arg-type]


@pytest.fixture
def translator(model: Path) -> Iterator[LlamaTranslator]:
    t = engine(model)
    yield t
    t.close()


class DecodeSpy:
    """Counts the tokens of every batch handed to llama.cpp's llama_decode (and passes it on):
    an independent count of what the engine's own eval wrapper reports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tokens = 0
        real = llama_cpp.llama_cpp.llama_decode

        def spy(ctx: object, batch: object) -> int:
            self.tokens += int(batch.n_tokens)  # type: ignore[attr-defined]
            return int(real(ctx, batch))

        monkeypatch.setattr(llama_cpp.llama_cpp, "llama_decode", spy)


def test_system_prompt_is_evaluated_once_and_reused_for_every_sentence(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = DecodeSpy(monkeypatch)
    cached, cold = engine(model), engine(model, reuse_prefix=False)
    try:
        system = len(cached.system_tokens)
        assert system > 100
        for text in SENTENCES:
            before, before_total = decoded.tokens, cached.evaluated_total
            out = "".join(cached.translate(text))
            s = cached.last_stats
            # only what follows the system prompt is evaluated ...
            assert 0 < s.evaluated_tokens <= s.prompt_tokens - system
            # ... and llama.cpp was handed exactly what the engine counted (prompt part + decode)
            assert decoded.tokens - before == cached.evaluated_total - before_total
            assert s.evaluated_tokens + s.generated_tokens - 1 <= decoded.tokens - before
            assert decoded.tokens - before <= s.evaluated_tokens + s.generated_tokens
            assert out
            before = decoded.tokens
            cold_out = "".join(cold.translate(text))
            c = cold.last_stats
            assert c.evaluated_tokens == c.prompt_tokens == s.prompt_tokens
            assert decoded.tokens - before >= c.prompt_tokens
            assert cold_out == out  # the cache changes the cost, not the words
    finally:
        cached.close()
        cold.close()


def test_first_sentence_after_load_reuses_exactly_the_system_prompt(translator: LlamaTranslator) -> None:
    "".join(translator.translate(SENTENCES[1]))
    s = translator.last_stats
    assert s.cached_tokens == len(translator.system_tokens)
    assert s.evaluated_tokens == s.prompt_tokens - len(translator.system_tokens)
    "".join(translator.translate(SENTENCES[1]))  # a retried sentence finds its whole prompt cached
    assert translator.last_stats.evaluated_tokens == 1  # (the last token is replayed for its logits)


def test_same_sentence_twice_gives_the_same_pieces(translator: LlamaTranslator) -> None:
    first = list(translator.translate(SENTENCES[2]))
    "".join(translator.translate(SENTENCES[0]))  # something else in between
    again = list(translator.translate(SENTENCES[2]))
    assert "".join(first) == "".join(again) and first


def test_context_pairs_ride_along_and_are_dropped_oldest_first_to_fit(model: Path) -> None:
    pairs = [
        (f"Sentence number {i} about the parser module.", "パーサーモジュールについての文です。" * 3)
        for i in range(8)
    ]
    roomy = engine(model, n_ctx=4096)
    tight = engine(model, n_ctx=1024, max_tokens=64)
    try:
        "".join(roomy.translate("The tests pass now.", pairs[:3]))
        assert roomy.last_stats.context_pairs == 3
        with_ctx = roomy.last_stats.prompt_tokens
        "".join(roomy.translate("The tests pass now."))
        assert roomy.last_stats.prompt_tokens < with_ctx  # the pairs really are in the prompt
        "".join(tight.translate("The tests pass now.", pairs))
        s = tight.last_stats
        assert 0 < s.context_pairs < len(pairs)
        said = [m["content"] for m in tight.last_messages if m["role"] == "user"]
        assert said == [en for en, _ in pairs[-s.context_pairs :]] + ["The tests pass now."]  # newest kept
        assert s.prompt_tokens + 64 <= 1024
        with pytest.raises(ContextOverflow):
            list(tight.translate("word " * 900))
    finally:
        roomy.close()
        tight.close()


def test_strict_retry_drops_the_context_and_spells_out_the_request(translator: LlamaTranslator) -> None:
    "".join(translator.translate("Okay.", [("Earlier.", "以前。")], strict=True))
    assert translator.last_stats.context_pairs == 0
    strict_tokens = translator.last_stats.prompt_tokens
    "".join(translator.translate("Okay."))
    assert translator.last_stats.prompt_tokens < strict_tokens


def test_max_tokens_is_a_hard_cap(model: Path) -> None:
    t = engine(model, max_tokens=5)
    try:
        for text in SENTENCES:
            "".join(t.translate(text))
            assert t.last_stats.generated_tokens <= 5
    finally:
        t.close()


def test_cpu_threads_are_as_asked_else_llamas_default(model: Path) -> None:
    t = engine(model, n_threads=None)
    try:  # llama-cpp-python's default: half the cores for a token, all of them for a batch
        assert t.n_threads == t._llm.context_params.n_threads == max((os.cpu_count() or 1) // 2, 1)
        assert t._llm.context_params.n_threads_batch == (os.cpu_count() or 1)
    finally:
        t.close()
    t = engine(model, n_threads=2)
    try:
        params = t._llm.context_params
        assert (t.n_threads, params.n_threads, params.n_threads_batch) == (2, 2, 2)
    finally:
        t.close()


def test_a_split_model_loads_from_its_first_shard(model: Path, tmp_path: Path) -> None:
    first = write_tiny_qwen2_gguf(tmp_path / "split.gguf", shards=3)
    split, whole = engine(first), engine(model)
    try:
        assert "".join(split.translate(SENTENCES[1])) == "".join(whole.translate(SENTENCES[1]))
    finally:
        split.close()
        whole.close()


def test_a_model_written_to_speak_ascii_never_answers_in_japanese(tmp_path: Path) -> None:
    t = engine(write_tiny_qwen2_gguf(tmp_path / "ascii.gguf", speaks="ascii"))
    try:
        answers = set()
        for text in SENTENCES:
            for strict in (False, True):
                out = "".join(t.translate(text, strict=strict))
                assert out.strip() and out.isascii() and not is_japanese(out), out
                assert t.last_stats.generated_tokens > 0
                assert "".join(t.translate(text, strict=strict)) == out  # greedy: the same every time
                answers.add(out)
        assert len(answers) > 1  # the prompt still steers it: a real model, not a fixed string
    finally:
        t.close()
    silent = engine(write_tiny_qwen2_gguf(tmp_path / "nothing.gguf", speaks="nothing"))
    try:
        assert "".join(silent.translate(SENTENCES[1])) == ""
        assert silent.last_stats.generated_tokens == 0
    finally:
        silent.close()
    with pytest.raises(ValueError, match="speaks"):
        write_tiny_qwen2_gguf(tmp_path / "x.gguf", speaks="klingon")


def test_load_failures_are_model_load_errors_that_say_why(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        engine(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="cannot load"):
        engine(junk)
    first = write_tiny_qwen2_gguf(tmp_path / "s.gguf", shards=2)
    (tmp_path / "s-00002-of-00002.gguf").unlink()
    with pytest.raises(ModelLoadError, match=r"s-00002-of-00002\.gguf"):
        engine(first)
    second = tmp_path / "x-00002-of-00002.gguf"
    second.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="shard 2 of 2"):
        engine(second)
    assert issubclass(ModelLoadError, EngineError)


def test_a_closed_engine_raises_an_engine_error(model: Path) -> None:
    t = engine(model)
    t.close()
    with pytest.raises(EngineError):
        list(t.translate("Hello."))


# ---- Qwen3: thinking switched off, and never passed on ------------------------------------------


@pytest.mark.parametrize(
    ("moe", "mode", "prompt_end"),
    [
        (False, "enable_thinking=false", "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        (True, "none", "<|im_start|>assistant\n"),
    ],
    ids=["qwen3-hybrid", "qwen3moe-2507"],
)
def test_qwen3_prompts_switch_thinking_off_and_reuse_the_system_prompt(
    tmp_path: Path, moe: bool, mode: str, prompt_end: str
) -> None:
    t = engine(write_tiny_qwen3_gguf(tmp_path / "q3.gguf", moe=moe))
    try:
        assert t.thinking == t.describe()["thinking"] == mode and not t.opens_think
        tokens, _ = t.prompt_tokens("The tests pass now.", [("Earlier.", "以前。")])
        prompt = t.llm.detokenize(tokens, special=True).decode()
        assert prompt.endswith(prompt_end) and prompt.count("<think>") == (0 if moe else 1)
        assert "/no_think" not in prompt
        for text in SENTENCES:
            out = "".join(t.translate(text))
            assert is_japanese(out) and "<think>" not in out, out
            assert t.last_stats.cached_tokens >= len(t.system_tokens)  # the cache works as for qwen2
            assert t.last_stats.generated_tokens < t.settings.max_tokens  # it ended by itself
    finally:
        t.close()


def test_a_qwen3_that_thinks_anyway_has_its_thinking_taken_out(tmp_path: Path) -> None:
    t = engine(write_tiny_qwen3_gguf(tmp_path / "think.gguf", speaks="think"))
    try:
        for text in SENTENCES:
            pieces = list(t.translate(text))
            out = "".join(pieces)
            assert out and is_japanese(out), out
            assert not any("think>" in p or "<" in p for p in pieces), pieces
            assert t.last_stats.thought_chars == 4  # the tiny model's four characters of "reasoning"
            raw = t.llm.detokenize(t.prompt_tokens(text)[0][-3:], special=True)  # sanity: it is Qwen3
            assert raw.endswith(b"</think>\n\n")
    finally:
        t.close()


def test_thinking_mode_follows_the_template() -> None:
    assert thinking_mode(QWEN3_CHAT_TEMPLATE) == "enable_thinking=false"
    assert thinking_mode(QWEN3_2507_CHAT_TEMPLATE) == "none"
    assert thinking_mode("{{ '<|im_start|>assistant\\n<think>\\n' }}") == "/no_think"
