# ruff: noqa: E501  (the chat templates below are verbatim; their long lines stay as they are)
"""A tiny random-weight Qwen2 GGUF, written with the `gguf` package, that llama.cpp loads and runs
exactly as it runs Qwen2.5-Instruct: same architecture tensors, byte-level BPE tokenizer metadata
(`gpt2` model, `qwen2` pre-tokenizer, 256 byte tokens + merges + the ChatML specials with their
token types), bos/eos ids, and Qwen2.5's own chat template, so llama-cpp-python renders prompts
with the model's template just as it will with the real weights.

The weights are random but not shapeless, so that greedy decoding emits Japanese (nonsense, but
Japanese: the node's clause splitting and "is this Japanese?" checks then see what a real model
sends, and `stream-tts up --tiny` speaks every sentence). Every embedding carries one shared
direction that the output rows of a few dozen Japanese tokens (kana, kanji, 、。) read, so they
outrank all other tokens; each of those characters also carries a random code that its
successor on a seeded walk reads, and the walk ends with 。 then <|im_end|>. Peaky attention
lets the prompt choose where the walk starts, so different sentences get different "translations".

`speaks="ascii"` writes the same model with the walk over lowercase ASCII byte tokens (ending with
"." then <|im_end|>): a real qwen2 GGUF that deterministically answers with no Japanese at all, the
way a confused model answers in English, so the node's retry-then-fail path runs on the real
llama.cpp. `speaks="nothing"` ends every answer at once (<|im_end|> outranks every character): the
empty translation.

ARCHS: the same model as a Qwen3 GGUF (write_tiny_qwen3_gguf): `qwen3`, the dense architecture of
Qwen3-8B/14B (no q/k/v biases, heads wider than n_embd / n_head with their `key_length`, an RMSNorm
over each query and key head), with Qwen3's hybrid thinking template and its <think> and </think>
tokens; and `qwen3moe`, the mixture-of-experts architecture of Qwen3-30B-A3B (the same attention,
and per layer a router over N_EXPERT experts of which N_EXPERT_USED run for each token, with the
expert count, experts used and expert FFN width in the metadata), with the non-thinking template
of the Instruct-2507 models. llama.cpp loads and runs both (tests/test_tiny_gguf.py).

Same seed, same bytes: nothing but the seed feeds the random generator, and the writer is given
every key in a fixed order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Shapes: small enough to write in well under a second, big enough for 2 KV heads and RoPE.
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
CONTEXT_LENGTH = 8192
ROPE_FREQ_BASE = 1_000_000.0  # Qwen2.5's
RMS_EPS = 1e-6
# How the weights steer greedy decoding (module docstring): how strongly a character calls its
# successor on the walk, and how much the attention layers (which carry the prompt) move the start.
# Tuned by hand on seeds 0-4: most decodes end by themselves within 80 tokens, and different
# prompts start the walk at different characters.
CODE = 4.0  # norm of a character's "who am I" code in its embedding
FOLLOW = 1.0  # how strongly that code calls the successor's output row
QK_STD = 0.6  # peaky attention: the first character depends on a few prompt tokens, not their mean
ATTN_STD = 0.1  # value/output weights: the prompt nudges the residual stream, the code still leads
LAYER_STD = 0.05  # everything else

# Merges for common English pieces (so prompts are not only single bytes), in rank order.
ASCII_MERGES = ["Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e", "a t", "e n", "o r", "Ġ s"]
# Japanese characters the tiny model can emit as whole tokens (and the vocabulary spells with merges).
JA_CHARS = "。、をはがのにでとしてますいるたこれそあか日本語翻訳音声文字変更修正実行確認"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# What `speaks="ascii"` walks over instead (single byte tokens; "." ends the walk).
ASCII_CHARS = "abcdefghijklmnopqrstuvwxyz."
SPEAKS = ("ja", "ascii", "nothing", "think")
ARCHS = ("qwen2", "qwen3", "qwen3moe")
# Qwen3: Qwen3's reasoning markers, whole tokens printed as text (not control tokens); heads wider
# than n_embd / n_head, as in every Qwen3 (head_dim 128); an RMSNorm gain on each query and key
# head that keeps attention as peaky as qwen2's biased projections make it.
THINK_TOKENS = ("<think>", "</think>")
QWEN3_HEAD_DIM = 32
QK_NORM_GAIN = 8.0
QWEN3_ATTN_STD = 0.07  # ATTN_STD for Qwen3's wider heads (tuned as above: every decode ends by itself)
# qwen3moe: experts per layer, experts each token uses, each expert's FFN width (Qwen3-30B-A3B:
# 128, 8, 768), and the router's weights.
N_EXPERT = 8
N_EXPERT_USED = 2
N_FF_EXPERT = 32
ROUTER_STD = 0.5
# speaks="think": how many characters the "reasoning" has.
THINK_CHARS = 4

# Qwen2.5-Instruct's chat template, verbatim from its tokenizer_config.json (the GGUF files of
# Qwen/Qwen2.5-*-Instruct-GGUF carry the same string in tokenizer.chat_template).
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""

# Qwen3's hybrid thinking chat template, verbatim as the Qwen3 release (April 2025) ships it in
# tokenizer_config.json (Qwen/Qwen3-8B, -14B, ...; llama.cpp keeps the same text as
# models/templates/Qwen-Qwen3-0.6B.jinja). With enable_thinking=false the generation prompt ends
# with an empty <think></think> block: the hard switch that keeps the model from thinking.
QWEN3_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

# The Qwen3 Instruct-2507 models (Qwen3-30B-A3B-Instruct-2507) do not think, and their template
# has no thinking in it: the same tools preamble, every turn plain ChatML, and a generation prompt
# of `<|im_start|>assistant\n` alone. Written here in that shape (the tool-call rendering is left
# out: the translator never sends tools), not copied: what matters to the tests is that no
# enable_thinking switch and no <think> block is in it.
QWEN3_2507_CHAT_TEMPLATE = r"""{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def tiny_vocab(user_defined: Sequence[str] = ()) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges): byte tokens, merged pieces, then the ChatML specials, then
    `user_defined` tokens (Qwen3's <think> and </think>: whole tokens that are printed as text,
    as in the real Qwen3 GGUFs, where they are added tokens that are not special)."""
    from gguf import TokenType

    b2u = byte_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges: list[str] = []
    known = set(tokens)

    def add_merge(left: str, right: str) -> None:
        merged = left + right
        if merged in known:
            return
        merges.append(f"{left} {right}")
        tokens.append(merged)
        known.add(merged)

    for merge in ASCII_MERGES:
        add_merge(*merge.split(" "))
    for ch in JA_CHARS:  # each character is 3 UTF-8 bytes: merge (b1 b2) then (b1b2 b3)
        u = [b2u[b] for b in ch.encode("utf-8")]
        add_merge(u[0], u[1])
        add_merge(u[0] + u[1], u[2])
    types = [int(TokenType.NORMAL)] * len(tokens) + [int(TokenType.CONTROL)] * len(SPECIALS)
    types += [int(TokenType.USER_DEFINED)] * len(user_defined)
    return [*tokens, *SPECIALS, *user_defined], types, merges


def write_tiny_qwen2_gguf(path: Path, seed: int = 0, shards: int = 1, speaks: str = "ja") -> Path:
    """Write the tiny model to `path` (atomically) and return `path`. With `shards` > 1 it is
    split as the big official GGUFs are: `<stem>-00001-of-0000n.gguf`, ... beside `path`
    (llama.cpp's split metadata included), and the first shard's path is returned. `speaks`:
    "ja" (Japanese nonsense), "ascii" (never any Japanese) or "nothing" (an empty answer)."""
    return write_tiny_gguf(path, "qwen2", seed=seed, shards=shards, speaks=speaks)


def write_tiny_qwen3_gguf(
    path: Path, seed: int = 0, moe: bool = False, shards: int = 1, speaks: str = "ja"
) -> Path:
    """The same tiny model as a Qwen3 GGUF (module docstring: ARCHS): the dense `qwen3`
    architecture with Qwen3's hybrid thinking chat template (Qwen3-8B/14B), or with `moe` the
    `qwen3moe` architecture with the non-thinking template of the Instruct-2507 models
    (Qwen3-30B-A3B-Instruct-2507). `speaks="think"` (dense only): a model that thinks aloud
    although the template switched thinking off: every answer starts with `<think>`, a few
    Japanese characters of "reasoning", `</think>`, then the Japanese walk, so what strips
    thinking from speech is tested on the real llama.cpp."""
    return write_tiny_gguf(path, "qwen3moe" if moe else "qwen3", seed=seed, shards=shards, speaks=speaks)


def write_tiny_gguf(path: Path, arch: str, seed: int = 0, shards: int = 1, speaks: str = "ja") -> Path:
    """Write a tiny model of `arch` ("qwen2", "qwen3", "qwen3moe"): see write_tiny_qwen2_gguf."""
    import math
    import shutil
    import tempfile

    import gguf

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if speaks not in SPEAKS or (speaks == "think" and arch != "qwen3"):
        allowed = SPEAKS if arch == "qwen3" else SPEAKS[:3]
        raise ValueError(f"speaks must be one of {', '.join(allowed)} for {arch}, got {speaks!r}")
    qwen3 = arch != "qwen2"
    tokens, types, merges = tiny_vocab(THINK_TOKENS if qwen3 else ())
    n_vocab = len(tokens)
    eot_id, im_end_id = tokens.index(SPECIALS[0]), tokens.index(SPECIALS[2])
    rng = np.random.default_rng(seed)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    per_layer = {"qwen2": 12, "qwen3": 11, "qwen3moe": 11}[arch]
    n_tensors = 1 + per_layer * N_LAYER + 2
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tiny-gguf-", dir=path.parent))
    w = gguf.GGUFWriter(
        str(tmp_dir / path.name),
        arch,
        split_max_tensors=math.ceil(n_tensors / shards) if shards > 1 else 0,
    )
    w.add_name(f"tiny-{arch}-random" if speaks == "ja" else f"tiny-{arch}-random-{speaks}")
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_context_length(CONTEXT_LENGTH)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    if qwen3:  # Qwen3's heads are wider than n_embd / n_head (Qwen3-30B-A3B: 32 x 128 on 2048)
        w.add_key_length(QWEN3_HEAD_DIM)
        w.add_value_length(QWEN3_HEAD_DIM)
    if arch == "qwen3moe":
        w.add_expert_count(N_EXPERT)
        w.add_expert_used_count(N_EXPERT_USED)
        w.add_expert_feed_forward_length(N_FF_EXPERT)
    w.add_rope_freq_base(ROPE_FREQ_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")  # Qwen3's GGUFs use the qwen2 pre-tokenizer too
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(eot_id)  # as Qwen2.5's and Qwen3's GGUFs: bos = <|endoftext|>, never added
    w.add_eos_token_id(im_end_id)
    w.add_pad_token_id(eot_id)
    w.add_add_bos_token(False)
    w.add_chat_template(
        {"qwen2": QWEN25_CHAT_TEMPLATE, "qwen3": QWEN3_CHAT_TEMPLATE, "qwen3moe": QWEN3_2507_CHAT_TEMPLATE}[
            arch
        ]
    )

    def normal(*shape: int, std: float = LAYER_STD) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def f16(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float16)

    # The walk (module docstring): its characters in a seeded order, 。 (or .) last, then the end.
    chars, end = (ASCII_CHARS, ".") if speaks == "ascii" else (JA_CHARS, "。")
    speak_ids = [tokens.index(_bpe_piece(ch)) for ch in chars]
    period = tokens.index(_bpe_piece(end))
    walk = [speak_ids[i] for i in rng.permutation(len(speak_ids)) if speak_ids[i] != period] + [period]
    if speaks == "think":  # <think>, the first few characters as its "reasoning", </think>, the rest;
        # led by "\n", the last token of every generation prompt, so every answer starts thinking
        newline, think_open, think_close = (tokens.index(t) for t in (_bpe_piece("\n"), *THINK_TOKENS))
        walk = [newline, think_open, *walk[:THINK_CHARS], think_close, *walk[THINK_CHARS:]]
    codes = rng.normal(size=(len(walk), N_EMBD - 2))
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)

    # numpy shapes are ggml's reversed: a (rows=out, cols=in) matrix, token rows for embeddings.
    embd = normal(n_vocab, N_EMBD, std=0.1)
    embd[:, 0] = 1.0  # the shared "speak Japanese" direction the output head reads
    embd[:, 1] = 0.0
    out = normal(n_vocab, N_EMBD, std=0.05)
    out[:, 0] = -1.0
    out[speak_ids, 0] = 1.0
    out[im_end_id, 0] = 4.0 if speaks == "nothing" else 0.5  # else below every character: only after 。
    if speaks == "think":
        out[walk[1], 0] = out[walk[THINK_CHARS + 2], 0] = 1.0  # <think> and </think> are spoken tokens
    for k, tok in enumerate(walk):
        embd[tok, 2:] = CODE * codes[k]
        successor = walk[k + 1] if k + 1 < len(walk) else im_end_id
        out[successor, 2:] += FOLLOW * codes[k]
    w.add_tensor("token_embd.weight", f16(embd))
    for i in range(N_LAYER):
        for name, tensor in _layer_tensors(arch, normal, f16):
            w.add_tensor(f"blk.{i}.{name}", tensor)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", f16(out))

    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        written = sorted(tmp_dir.iterdir())
        for f in written:
            os.replace(f, path.with_name(f.name))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path.with_name(written[0].name)


def _layer_tensors(
    arch: str, normal: Callable[..., np.ndarray], f16: Callable[[np.ndarray], np.ndarray]
) -> list[tuple[str, np.ndarray]]:
    """One block's tensors (name within the block, data), drawn in a fixed order.

    qwen2: biased q/k/v and a dense SwiGLU FFN. qwen3: no biases, wider heads (QWEN3_HEAD_DIM),
    and an RMSNorm over each query and key head (attn_q_norm, attn_k_norm), the tensors
    llama.cpp's qwen3 loader requires. qwen3moe: the same attention, and instead of the dense FFN
    a router (ffn_gate_inp: n_expert x n_embd) and the experts' stacked gate/up/down matrices."""
    ones = np.ones(N_EMBD, dtype=np.float32)
    if arch == "qwen2":
        head_dim = N_EMBD // N_HEAD
        kv_dim = head_dim * N_HEAD_KV
        return [
            ("attn_norm.weight", ones),
            ("attn_q.weight", f16(normal(N_EMBD, N_EMBD, std=QK_STD))),
            ("attn_q.bias", normal(N_EMBD, std=0.02)),
            ("attn_k.weight", f16(normal(kv_dim, N_EMBD, std=QK_STD))),
            ("attn_k.bias", normal(kv_dim, std=0.02)),
            ("attn_v.weight", f16(normal(kv_dim, N_EMBD, std=ATTN_STD))),
            ("attn_v.bias", normal(kv_dim, std=0.02)),
            ("attn_output.weight", f16(normal(N_EMBD, N_EMBD, std=ATTN_STD))),
            ("ffn_norm.weight", ones),
            ("ffn_gate.weight", f16(normal(N_FF, N_EMBD))),
            ("ffn_up.weight", f16(normal(N_FF, N_EMBD))),
            ("ffn_down.weight", f16(normal(N_EMBD, N_FF))),
        ]
    q_dim, kv_dim = QWEN3_HEAD_DIM * N_HEAD, QWEN3_HEAD_DIM * N_HEAD_KV
    head_norm = np.full(QWEN3_HEAD_DIM, QK_NORM_GAIN, dtype=np.float32)
    layer = [
        ("attn_norm.weight", ones),
        ("attn_q.weight", f16(normal(q_dim, N_EMBD, std=QK_STD))),
        ("attn_q_norm.weight", head_norm),
        ("attn_k.weight", f16(normal(kv_dim, N_EMBD, std=QK_STD))),
        ("attn_k_norm.weight", head_norm),
        ("attn_v.weight", f16(normal(kv_dim, N_EMBD, std=QWEN3_ATTN_STD))),
        ("attn_output.weight", f16(normal(N_EMBD, q_dim, std=QWEN3_ATTN_STD))),
        ("ffn_norm.weight", ones),
    ]
    if arch == "qwen3":
        return [
            *layer,
            ("ffn_gate.weight", f16(normal(N_FF, N_EMBD))),
            ("ffn_up.weight", f16(normal(N_FF, N_EMBD))),
            ("ffn_down.weight", f16(normal(N_EMBD, N_FF))),
        ]
    return [
        *layer,
        ("ffn_gate_inp.weight", normal(N_EXPERT, N_EMBD, std=ROUTER_STD)),
        ("ffn_gate_exps.weight", f16(normal(N_EXPERT, N_FF_EXPERT, N_EMBD))),
        ("ffn_up_exps.weight", f16(normal(N_EXPERT, N_FF_EXPERT, N_EMBD))),
        ("ffn_down_exps.weight", f16(normal(N_EXPERT, N_EMBD, N_FF_EXPERT))),
    ]


def _bpe_piece(ch: str) -> str:
    b2u = byte_to_unicode()
    return "".join(b2u[b] for b in ch.encode("utf-8"))


# ---- real-size random-weight Qwen2 GGUFs (for timing on a GPU; values never matter there) -------


@dataclass(frozen=True)
class Qwen2Dims:
    """The shapes that decide a Qwen2 model's cost (its config.json, in GGUF terms)."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    context_length: int = 32768
    rope_freq_base: float = 1_000_000.0
    rms_eps: float = 1e-6
    tied: bool = False  # output head shares token_embd (Qwen2.5 up to 3B); 7B and 72B have their own
    name: str = "qwen2-random"

    @property
    def n_params(self) -> int:
        head_dim = self.n_embd // self.n_head
        kv = head_dim * self.n_head_kv
        attn = self.n_embd * (2 * self.n_embd + 2 * kv) + self.n_embd + 2 * kv
        ffn = 3 * self.n_embd * self.n_ff
        per_layer = attn + ffn + 2 * self.n_embd
        heads = self.n_vocab * self.n_embd * (1 if self.tied else 2)
        return self.n_layer * per_layer + heads + self.n_embd


# Qwen/Qwen2.5-7B-Instruct and -72B-Instruct config.json (hidden_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, rope_theta,
# rms_norm_eps, tie_word_embeddings false, max_position_embeddings 32768).
QWEN25_7B = Qwen2Dims(3584, 28, 28, 4, 18944, 152064, name="qwen2.5-7b-instruct-shaped-random")
QWEN25_72B = Qwen2Dims(8192, 80, 64, 8, 29568, 152064, name="qwen2.5-72b-instruct-shaped-random")
TINY = Qwen2Dims(N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, N_FF, 512, CONTEXT_LENGTH, name="qwen2-small-random")


def tiktoken_vocab(path: Path) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of a byte-level BPE from a tiktoken ranks file (base64 token,
    rank per line), with the ChatML specials appended: a vocabulary that splits English into
    real-world-sized pieces, so prompt token counts are close to a real model's. Each merge is
    recovered as tiktoken's own converters do: the pair that BPE with ranks below the token's
    own rank leaves (tokens that do not reduce to one pair stay, unreachable)."""
    import base64

    from gguf import TokenType

    ranks: dict[bytes, int] = {}
    for line in Path(path).read_text(encoding="ascii").splitlines():
        if line.strip():
            b64, rank = line.split()
            ranks[base64.b64decode(b64)] = int(rank)
    by_rank = sorted(ranks, key=ranks.__getitem__)
    if [ranks[t] for t in by_rank] != list(range(len(by_rank))):
        raise ValueError(f"{path}: ranks are not 0..n-1")
    b2u = byte_to_unicode()

    def text(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    merges: list[str] = []
    for tok in by_rank:
        if len(tok) < 2:
            continue
        parts = _bpe(ranks, tok, ranks[tok])
        if len(parts) == 2:
            merges.append(f"{text(parts[0])} {text(parts[1])}")
    tokens = [text(t) for t in by_rank]
    types = [int(TokenType.NORMAL)] * len(tokens) + [int(TokenType.CONTROL)] * len(SPECIALS)
    return [*tokens, *SPECIALS], types, merges


def _bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def write_random_qwen2_gguf(
    path: Path,
    dims: Qwen2Dims,
    seed: int = 0,
    vocab: tuple[list[str], list[int], list[str]] | None = None,
    std: float = 0.02,
    answer: str | None = None,
) -> Path:
    """Write an f16 Qwen2 GGUF of any size with random weights (atomically) and return `path`:
    the exact tensor names, shapes and metadata of a real Qwen2.5-Instruct GGUF of `dims`, so
    llama.cpp loads, quantizes and runs it at the real cost. The tokenizer is `vocab` (default:
    the tiny byte-level one; tiktoken_vocab() for realistic prompt lengths), padded with unused
    tokens to dims.n_vocab. Tensors are streamed to disk one at a time (a 7B model is 15 GB);
    each is a slice of one shared pool of N(0, std) values at a random offset, which keeps
    writing at disk speed. Same seed, same bytes.

    `answer` scripts greedy decoding: the model answers every prompt with that text, one token
    per character, then <|im_end|> (see scripted_rows), so a pipeline downstream of it sees a
    fixed Japanese sentence at the real model's cost per token."""
    import shutil
    import tempfile

    import gguf

    tokens, types, merges = vocab if vocab is not None else tiny_vocab()
    if len(tokens) > dims.n_vocab:
        raise ValueError(f"vocabulary has {len(tokens)} tokens, more than n_vocab {dims.n_vocab}")
    pad = dims.n_vocab - len(tokens)
    tokens = [*tokens, *(f"[PAD{i}]" for i in range(pad))]
    types = [*types, *[int(gguf.TokenType.UNUSED)] * pad]
    eot_id, im_end_id = tokens.index(SPECIALS[0]), tokens.index(SPECIALS[2])
    rng = np.random.default_rng(seed)

    head_dim = dims.n_embd // dims.n_head
    kv = head_dim * dims.n_head_kv
    e, f = dims.n_embd, dims.n_ff
    # (name, numpy shape = ggml's reversed, kind): "w" f16 matrix, "b" f32 bias, "n" f32 norm (ones)
    spec: list[tuple[str, tuple[int, ...], str]] = [("token_embd.weight", (dims.n_vocab, e), "w")]
    for i in range(dims.n_layer):
        p = f"blk.{i}."
        spec += [
            (p + "attn_norm.weight", (e,), "n"),
            (p + "attn_q.weight", (e, e), "w"),
            (p + "attn_q.bias", (e,), "b"),
            (p + "attn_k.weight", (kv, e), "w"),
            (p + "attn_k.bias", (kv,), "b"),
            (p + "attn_v.weight", (kv, e), "w"),
            (p + "attn_v.bias", (kv,), "b"),
            (p + "attn_output.weight", (e, e), "w"),
            (p + "ffn_norm.weight", (e,), "n"),
            (p + "ffn_gate.weight", (f, e), "w"),
            (p + "ffn_up.weight", (f, e), "w"),
            (p + "ffn_down.weight", (e, f), "w"),
        ]
    spec.append(("output_norm.weight", (e,), "n"))
    if not dims.tied:
        spec.append(("output.weight", (dims.n_vocab, e), "w"))

    largest = max(int(np.prod(s)) for _, s, k in spec if k == "w")
    pool = (rng.standard_normal(min(largest, 1 << 26), dtype=np.float32) * std).astype(np.float16)

    def tensor(shape: tuple[int, ...], kind: str) -> np.ndarray:
        n = int(np.prod(shape))
        if kind == "n":
            return np.ones(shape, dtype=np.float32)
        if kind == "b":
            return rng.normal(0.0, std, size=shape).astype(np.float32)
        start = int(rng.integers(pool.size))
        return np.resize(np.concatenate((pool[start:], pool[:start])), n).reshape(shape)

    script = scripted_rows(tokens, answer, e, seed) if answer else None

    def rows(name: str, a: np.ndarray) -> np.ndarray:
        if script is None or name not in ("token_embd.weight", "output.weight"):
            return a
        emb, out = script  # `a` is tensor()'s own fresh array: set its rows in place
        for i, row in (emb if name == "token_embd.weight" else out).items():
            a[i] = row
        return a

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".random-gguf-", dir=path.parent))
    w = gguf.GGUFWriter(str(tmp_dir / path.name), "qwen2")
    w.add_name(dims.name)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_context_length(dims.context_length)
    w.add_embedding_length(e)
    w.add_block_count(dims.n_layer)
    w.add_feed_forward_length(f)
    w.add_head_count(dims.n_head)
    w.add_head_count_kv(dims.n_head_kv)
    w.add_rope_freq_base(dims.rope_freq_base)
    w.add_layer_norm_rms_eps(dims.rms_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(eot_id)
    w.add_eos_token_id(im_end_id)
    w.add_pad_token_id(eot_id)
    w.add_add_bos_token(False)
    w.add_chat_template(QWEN25_CHAT_TEMPLATE)
    for name, shape, kind in spec:
        dtype = np.dtype(np.float16 if kind == "w" else np.float32)
        w.add_tensor_info(name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for name, shape, kind in spec:
            w.write_tensor_data(rows(name, tensor(shape, kind)))
        w.close()
        os.replace(tmp_dir / path.name, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


# scripted_rows: how far the scripted tokens' embeddings stand out of the residual stream's noise
# (random pre-norm layers add O(1) per element each, ~11 after Qwen2.5-7B's 28), and how strongly
# a token's output row reads its predecessor's direction (logit ~ SCRIPT_READ * n_embd, against
# random logits of std ~ 0.02 * sqrt(n_embd)).
SCRIPT_EMBED = 50.0
SCRIPT_READ = 0.02


def scripted_rows(
    tokens: list[str], answer: str, n_embd: int, seed: int
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """(token_embd rows, output rows) by token id that make greedy decoding answer `answer`.

    The prompt of a chat template ends with "\n" (after "<|im_start|>assistant"); that token and
    each character of the answer get a large random direction as their embedding, which survives
    the random layers and the final norm, and the output row of each one's successor is that same
    direction: so "\n" calls the first character, each character the next, and the last one
    <|im_end|>. Every character must be one token of the vocabulary, and no two the same (a
    token has one successor)."""
    b2u = byte_to_unicode()
    index = {t: i for i, t in enumerate(tokens)}
    chain = ["\n", *answer]
    ids: list[int] = []
    for ch in chain:
        piece = "".join(b2u[b] for b in ch.encode("utf-8"))
        if piece not in index:
            raise ValueError(f"answer character {ch!r} is not one token of the vocabulary")
        ids.append(index[piece])
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"answer {answer!r} repeats a character (or holds a newline): each token needs one successor"
        )
    rng = np.random.default_rng([seed, 7])
    emb: dict[int, np.ndarray] = {}
    out: dict[int, np.ndarray] = {}
    for tok, succ in zip(ids, [*ids[1:], index[SPECIALS[2]]], strict=True):
        u = rng.standard_normal(n_embd).astype(np.float32)
        emb[tok] = (u * SCRIPT_EMBED).astype(np.float16)
        out[succ] = (u * SCRIPT_READ).astype(np.float16)
    return emb, out
