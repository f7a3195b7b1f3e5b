"""Translate latency per sentence on the real llama.cpp, through the node's own engine.

For each sentence (protected as the node protects it):
  cached   the engine as the node runs it: the system prompt's KV state reused, only the rest
           of the prompt evaluated; its prefill time and tokens evaluated
  cold     the same prompt evaluated from an empty cache; prefill time and tokens evaluated
  decode   ms per generated token (greedy, up to --max-tokens)
  ttfc8    time to a fixed 8-token first clause: prompt built and tokenized, cached prefill,
           then 8 tokens decoded (the end token is masked so it is always 8)
With --bandwidth-gbs it adds the physical floor: one decode step must read every weight once,
so floor = model bytes / bandwidth; an 8-token clause needs 8 such passes (prefill + 7 steps).

Needs only llama_cpp, gguf and numpy (plus this repo's nodes/ and models/, pure Python).

    python bench/translate.py [--model PATH] [--n-gpu-layers N] [--sentences 12]
        [--bandwidth-gbs 3350] [--flash-attn] [--out bench/results/translate-<host>.json]

--flash-attn loads the model with llama.cpp's flash attention on (the engine leaves it off).
On CUDA, llama.cpp captures batch-1 decode steps in CUDA graphs unless the environment has
GGML_CUDA_DISABLE_GRAPHS set (read once per process): the result records which.

Without --model it builds the tiny random-weight GGUF in a temp dir (numbers then describe
llama.cpp's overhead, not a real model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp
import numpy as np

from nodes.translate.llama.engine import SPLIT_SHARD, LlamaSettings, LlamaTranslator
from nodes.translate.llama.tiny import write_tiny_qwen2_gguf
from nodes.translate.placeholders import protect

CLAUSE_TOKENS = 8
SENTENCES = [
    "I'll start by reading the failing test to understand what it expects.",
    "The bug is in `parse_config`: it ignores the environment variable when the file is missing.",
    "Let me run the test suite again to make sure nothing else broke.",
    "All 42 tests pass now, including the two new ones for src/config.py.",
    "Next, I'm going to update the README so the new option is documented.",
    "I found three places where the cache is read without holding the lock.",
    "This change is backwards compatible, so existing configs keep working.",
    "The build failed on Python 3.11 because of a missing type annotation.",
    "I've committed the fix and pushed it to the feature branch.",
    "Should I also refactor the retry logic while I'm here?",
    "The benchmark shows a 30% speedup on the large input files.",
    "Done! The pull request is ready for review.",
]


def model_bytes(first: Path) -> int:
    """All shards of a split model, or the one file."""
    m = SPLIT_SHARD.search(first.name)
    if m is None:
        return first.stat().st_size
    count = int(m.group(2))
    names = [SPLIT_SHARD.sub(f"-{i:05d}-of-{count:05d}.gguf", first.name) for i in range(1, count + 1)]
    return sum(first.with_name(n).stat().st_size for n in names)


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


_END_TOKENS: dict[int, Any] = {}


def end_tokens(llm: llama_cpp.Llama) -> Any:
    if id(llm) not in _END_TOKENS:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        ids = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        _END_TOKENS[id(llm)] = np.array(ids, dtype=np.intc)
    return _END_TOKENS[id(llm)]


def ttfc(engine: LlamaTranslator, text: str) -> float:
    """ms until a fixed 8-token clause is decoded, with the system prompt cached as in the node."""
    llm = engine.llm
    eog = end_tokens(llm)

    def no_end(_ids: Any, logits: Any) -> Any:
        logits[eog] = -np.inf
        return logits

    engine.reuse_prefix = True
    "".join(engine.translate("Okay."))  # leave something else in the cache, as a real stream does
    t0 = time.perf_counter()
    tokens, _ = engine.prompt_tokens(text)
    no_end_list = llama_cpp.LogitsProcessorList([no_end])
    for n, _token in enumerate(llm.generate(tokens, temp=0.0, top_k=1, logits_processor=no_end_list), 1):
        if n == CLAUSE_TOKENS:
            break
    return (time.perf_counter() - t0) * 1000


def measure(engine: LlamaTranslator, text: str) -> dict[str, Any]:
    masked = protect(text).text
    engine.reuse_prefix = True
    "".join(engine.translate(masked))
    cached = engine.last_stats
    engine.reuse_prefix = False
    "".join(engine.translate(masked))
    cold = engine.last_stats
    row = {
        "text": text,
        "prompt_tokens": cached.prompt_tokens,
        "evaluated_cached": cached.evaluated_tokens,
        "evaluated_cold": cold.evaluated_tokens,
        "prefill_cold_ms": round(cold.prefill_ms, 3),
        "prefill_cached_ms": round(cached.prefill_ms, 3),
        "generated_tokens": cached.generated_tokens,
        "ms_per_token": round(cached.decode_ms / max(1, cached.generated_tokens), 3),
        "ttfc8_ms": round(ttfc(engine, masked), 3),
    }
    engine.reuse_prefix = True
    return row


def llama_perf(llm: llama_cpp.Llama) -> dict[str, float]:
    """llama.cpp's own counters over the measured sentences: time inside llama_decode until the
    result is synchronized (so GPU time included), per single-token decode and per prompt token;
    what the Python loop adds on top is the rest of ms_per_token."""
    p = llama_cpp.llama_perf_context(llm.ctx)
    return {
        "n_eval": p.n_eval,
        "decode_ms_per_token": round(p.t_eval_ms / max(1, p.n_eval), 4),
        "n_p_eval": p.n_p_eval,
        "prompt_ms_per_token": round(p.t_p_eval_ms / max(1, p.n_p_eval), 4),
    }


def with_flash_attn() -> None:
    """Every Llama made from here on (the engine's too) gets flash_attn=True unless told."""
    original = llama_cpp.Llama.__init__

    def init(self: llama_cpp.Llama, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("flash_attn", True)
        original(self, *args, **kwargs)

    llama_cpp.Llama.__init__ = init  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="GGUF (a split model: its first shard); default: tiny model")
    ap.add_argument("--n-gpu-layers", type=int, default=None, help="default: all if llama.cpp has a GPU")
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--bandwidth-gbs", type=float, default=None, help="GPU memory bandwidth, GB/s")
    ap.add_argument("--flash-attn", action="store_true", help="llama.cpp flash attention on")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.flash_attn:
        with_flash_attn()

    tmp = None
    model = args.model
    if model is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-translate-")
        model = write_tiny_qwen2_gguf(Path(tmp.name) / "tiny-qwen2.gguf")
    t0 = time.perf_counter()
    engine = LlamaTranslator(
        LlamaSettings(
            model=model,
            n_ctx=args.n_ctx,
            n_threads=args.threads,
            n_gpu_layers=args.n_gpu_layers,
            max_tokens=args.max_tokens,
        )
    )
    load_s = time.perf_counter() - t0
    "".join(engine.translate("Warming up."))  # first-call allocations out of the numbers
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.sentences)]
    llama_cpp.llama_perf_context_reset(engine.llm.ctx)
    rows = [measure(engine, t) for t in texts]
    perf = llama_perf(engine.llm)
    engine.close()

    keys = [k for k in rows[0] if k != "text"]
    median = {k: statistics.median(r[k] for r in rows) for k in keys}
    size = model_bytes(model)
    floor = None
    if args.bandwidth_gbs:
        step_ms = size / (args.bandwidth_gbs * 1e9) * 1000
        floor = {
            "bandwidth_gbs": args.bandwidth_gbs,
            "ms_per_token": round(step_ms, 6),
            "ttfc8_ms": round(CLAUSE_TOKENS * step_ms, 6),
            "ratio_ms_per_token": round(median["ms_per_token"] / step_ms, 2),
            "ratio_ttfc8": round(median["ttfc8_ms"] / (CLAUSE_TOKENS * step_ms), 2),
        }
    result = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "backend": engine.backend,
        "llama_cpp_python": llama_cpp.__version__,
        "model": str(model),
        "model_name": engine.model_name,
        "tiny_model": args.model is None,
        "model_bytes": size,
        "load_s": round(load_s, 3),
        "n_gpu_layers": engine.n_gpu_layers,
        "n_ctx": args.n_ctx,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "flash_attn": args.flash_attn,
        "cuda_graphs": engine.backend == "cuda" and "GGML_CUDA_DISABLE_GRAPHS" not in os.environ,
        "system_prompt_tokens": len(engine.system_tokens),
        "sentences": rows,
        "median": median,
        "llama_perf": perf,
        "floor": floor,
    }
    print_table(result)
    out = args.out or Path(__file__).resolve().parent / "results" / f"translate-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def print_table(r: dict[str, Any]) -> None:
    what = "tiny random-weight model" if r["tiny_model"] else r["model_name"]
    size_mb, gpu = r["model_bytes"] / 1e6, r["gpu"] or "no GPU"
    print(f"translate bench: {what} ({size_mb:.1f} MB), backend {r['backend']}, {gpu}")
    print(
        f"  host {r['host']} ({r['cpu_count']} cores), llama-cpp-python {r['llama_cpp_python']}, "
        f"load {r['load_s']} s, system prompt {r['system_prompt_tokens']} tokens"
    )
    head = [
        "#",
        "prompt",
        "eval cached",
        "eval cold",
        "prefill cold ms",
        "prefill cached ms",
        "ms/token",
        "ttfc8 ms",
    ]
    cols = [
        "prompt_tokens",
        "evaluated_cached",
        "evaluated_cold",
        "prefill_cold_ms",
        "prefill_cached_ms",
        "ms_per_token",
        "ttfc8_ms",
    ]
    widths = [max(len(h), 8) for h in head]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for i, row in enumerate(r["sentences"]):
        cells = [str(i), *(f"{row[c]:g}" for c in cols)]
        print("  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    cells = ["median", *(f"{r['median'][c]:g}" for c in cols)]
    print("  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    f = r["floor"]
    if f:
        print(
            f"  floor at {f['bandwidth_gbs']:g} GB/s (model bytes / bandwidth): "
            f"{f['ms_per_token']:.4g} ms/token, "
            f"{f['ttfc8_ms']:.4g} ms per 8-token clause"
        )
        print(f"  measured / floor: {f['ratio_ms_per_token']:g}x per token, {f['ratio_ttfc8']:g}x ttfc8")
    p = r["llama_perf"]
    print(
        f"  inside llama.cpp: {p['decode_ms_per_token']:g} ms per decoded token ({p['n_eval']} tokens), "
        f"{p['prompt_ms_per_token']:g} ms per prompt token ({p['n_p_eval']} tokens)"
    )


if __name__ == "__main__":
    sys.exit(main())
