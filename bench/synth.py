"""Synthesize benchmark: first-chunk latency, real-time factor and chunk sizes of the streaming
engine, then its parts: the LM decode step (eager + HF cache, as the engine runs it, against the
same step captured in a CUDA graph with a StaticCache, on CUDA only), and flow and vocoder per chunk.

    .venv/bin/python bench/synth.py                      # tiny random model, here (CPU)
    .venv/bin/python bench/synth.py --size real          # CosyVoice2-0.5B's real shapes, random weights
    .venv/bin/python bench/synth.py --model DIR          # a model folder (real weights)

Prints a table and writes JSON (--json, default var/bench/synth-<size>-<device>.json). Timings do
not depend on weight values, so the real-shaped random folder times what CosyVoice2-0.5B would.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.stream import ChunkVocoder, LmStep, Timings, autocast_for

SENTENCE = ["テストを実行しました、", "すべてのテストが通りました。"]
PREFILL_TOKENS = 120  # ~ a prompt plus a sentence, as in gpu-anchors.md


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_engine(engine: CosyVoiceEngine, runs: int) -> dict[str, Any]:
    """End to end, as the node calls it: time to the first chunk, RTF, chunk sizes."""
    first, rtf, total, sizes, parts = [], [], [], [], []
    next(iter(engine.synthesize(SENTENCE)))  # warm up
    for _ in range(runs):
        t0 = time.perf_counter()
        chunks: list[Any] = []
        for c in engine.synthesize(SENTENCE):
            if not chunks:
                first.append((time.perf_counter() - t0) * 1e3)
            chunks.append(c)
        wall = time.perf_counter() - t0
        audio_s = sum(c.pcm.size for c in chunks) / engine.sample_rate_hz
        total.append(wall * 1e3)
        rtf.append(wall / audio_s)
        sizes = [int(c.pcm.size) for c in chunks]
        parts = [c.timings for c in chunks]
    return {
        "first_chunk_ms": statistics.median(first),
        "total_ms": statistics.median(total),
        "rtf": statistics.median(rtf),
        "chunk_samples": sizes,
        "chunk_ms": [round(s / engine.sample_rate_hz * 1e3, 1) for s in sizes],
        "chunk_timings": parts,
    }


def bench_lm(engine: CosyVoiceEngine, steps: int, graphs: bool) -> dict[str, Any]:
    """Prefill, then one decode step at a time: eager (the engine's LmStep) and, on CUDA, graphed."""
    m = engine.model
    dev, llm = m.device, m.llm
    dim = llm.llm_embedding.weight.shape[1]
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randn(1, PREFILL_TOKENS, dim, generator=gen).to(dev, llm.llm_embedding.weight.dtype)
    step = LmStep(m)
    out: dict[str, Any] = {"prefill_tokens": PREFILL_TOKENS, "steps": steps}
    with torch.inference_mode(), autocast_for(m):
        _sync(dev)
        t0 = time.perf_counter()
        _, cache = step(prompt, None)
        _sync(dev)
        out["prefill_ms"] = (time.perf_counter() - t0) * 1e3
        x = llm.speech_embedding.weight[:1].reshape(1, 1, -1)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            _, cache = step(x, cache)
            _sync(dev)
            times.append((time.perf_counter() - t0) * 1e3)
        out["eager_step_ms"] = statistics.median(times[1:] or times)
        if graphs and dev.type == "cuda":
            out["graph_step_ms"] = _graph_step_ms(m, steps)
    return out


def _graph_step_ms(m: Any, steps: int) -> float:
    """One decode step of the Qwen2 trunk + CosyVoice's llm_decoder, captured in a CUDA graph over
    a StaticCache (cache_position and input embedding are static tensors updated in place)."""
    from transformers import StaticCache

    dev, llm = m.device, m.llm
    trunk = llm.llm.model.model  # Qwen2Model (no vocabulary head: CosyVoice decodes hidden states)
    dtype = llm.llm_embedding.weight.dtype
    cache = StaticCache(
        config=trunk.config,
        max_batch_size=1,
        max_cache_len=PREFILL_TOKENS + steps + 8,
        device=dev,
        dtype=dtype,
    )
    prompt = torch.randn(1, PREFILL_TOKENS, trunk.config.hidden_size, device=dev, dtype=dtype)
    trunk(
        inputs_embeds=prompt,
        past_key_values=cache,
        use_cache=True,
        cache_position=torch.arange(PREFILL_TOKENS, device=dev),
    )
    x = torch.zeros(1, 1, trunk.config.hidden_size, device=dev, dtype=dtype)
    pos = torch.tensor([PREFILL_TOKENS], device=dev)

    def decode() -> torch.Tensor:
        h = trunk(
            inputs_embeds=x, past_key_values=cache, use_cache=True, cache_position=pos
        ).last_hidden_state
        return llm.llm_decoder(h[:, -1]).log_softmax(dim=-1)

    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(3):
            decode()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode()
    times = []
    for i in range(steps):
        pos.fill_(PREFILL_TOKENS + i)
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[1:] or times)


def bench_sampler(engine: CosyVoiceEngine, tokens: int = 200) -> dict[str, Any]:
    """One speech token drawn from the LM's scores: upstream's ras_sampling as its LM calls it against
    nodes/cosyvoice_sampling's tensor version, alternated token by token (the same draws: same seed)."""
    from nodes.synthesize.cosyvoice.sampling import sampler_for, upstream_sampler
    from nodes.synthesize.cosyvoice.stream import TOP_K

    m = engine.model
    vocab = int(m.llm.speech_token_size) + 3
    gen = torch.Generator().manual_seed(0)
    logps = [(torch.randn(vocab, generator=gen) * 3).log_softmax(0).to(m.device) for _ in range(tokens)]
    ours, theirs = sampler_for(m.llm, TOP_K), upstream_sampler(m.llm, TOP_K)
    times: dict[str, list[float]] = {"upstream": [], "tensor": []}
    decoded: list[int] = []
    for logp in logps:
        for name, fn in (("upstream", theirs), ("tensor", ours)):
            _sync(m.device)
            t0 = time.perf_counter()
            token = fn(logp, decoded)
            times[name].append((time.perf_counter() - t0) * 1e3)
        decoded.append(token)
    up, te = statistics.median(times["upstream"]), statistics.median(times["tensor"])
    return {"tokens": tokens, "upstream_ms": up, "tensor_ms": te, "ratio": up / te}


def bench_vocoder(engine: CosyVoiceEngine, chunks: int, runs: int) -> list[dict[str, Any]]:
    """Flow and HiFT time of chunk k of an utterance (the flow recomputes the prefix: k matters)."""
    m, opts = engine.model, engine.options
    v = engine.bank.get("")
    la = m.params["pre_lookahead_len"]
    n = opts.first_hop_tokens + (chunks - 1) * opts.hop_tokens + la
    tokens = torch.randint(0, m.params["speech_token_size"], (n,), generator=torch.Generator().manual_seed(0))
    rows: list[list[dict[str, float]]] = [[] for _ in range(chunks)]
    with torch.inference_mode():
        for _ in range(runs + 1):  # the first pass warms up
            timings = Timings()
            voc = ChunkVocoder(
                m,
                v.embedding,
                torch.zeros(1, 0, dtype=torch.int32),
                torch.zeros(1, 0, m.params["mel_bins"]),
                timings,
            )
            offset, hop = 0, opts.first_hop_tokens
            for k in range(chunks):
                pcm = voc(tokens[: offset + hop + la].tolist(), offset, finalize=False)
                rows[k].append(
                    {**timings.take(), "tokens": float(offset + hop + la), "samples": float(pcm.size)}
                )
                offset, hop = offset + hop, opts.hop_tokens
    return [
        {
            "chunk": k,
            "tokens": int(r[0]["tokens"]),
            "samples": int(r[0]["samples"]),
            "flow_ms": statistics.median(x["flow_ms"] for x in r[1:]),
            "hift_ms": statistics.median(x["hift_ms"] for x in r[1:]),
        }
        for k, r in enumerate(rows)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="a CosyVoice2 folder (default: write a random one)")
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny", help="random folder's shapes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--first-hop", type=int, default=15)
    parser.add_argument("--hop", type=int, default=25)
    parser.add_argument("--lm-steps", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=3, help="vocoder chunks timed")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--skip-engine", action="store_true", help="only the LM and vocoder parts")
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        folder = args.model
        built_s = None
        if folder is None:
            from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2

            t0 = time.perf_counter()
            folder = write_random_cosyvoice2(Path(tmp) / f"cosyvoice2-{args.size}", size=args.size)
            built_s = time.perf_counter() - t0
        opts = EngineOptions(
            device=args.device,
            dtype=args.dtype,
            first_hop_tokens=args.first_hop,
            hop_tokens=args.hop,
            deadline_s=600.0,
            max_token_text_ratio=4.0,
        )
        t0 = time.perf_counter()
        engine = CosyVoiceEngine(folder, opts)
        load_s = time.perf_counter() - t0
        m = engine.model
        result: dict[str, Any] = {
            "model": str(args.model or f"random-{args.size}"),
            "device": str(m.device),
            "dtype": str(m.dtype),
            "threads": torch.get_num_threads(),
            "first_hop_tokens": args.first_hop,
            "hop_tokens": args.hop,
            "build_s": built_s,
            "load_s": load_s,
            "torch": torch.__version__,
            "lm_params_m": sum(p.numel() for p in m.llm.parameters()) / 1e6,
        }
        if not args.skip_engine:
            result["engine"] = bench_engine(engine, args.runs)
        result["lm"] = bench_lm(engine, args.lm_steps, graphs=not args.no_graphs)
        result["sampler"] = bench_sampler(engine)
        result["vocoder"] = bench_vocoder(engine, args.chunks, max(1, min(args.runs, 3)))
    print_table(result)
    out = (
        args.json
        or Path("var/bench") / f"synth-{args.size if args.model is None else 'model'}-{m.device.type}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nJSON: {out}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    print(
        f"synthesize bench: {r['model']} on {r['device']} ({r['dtype']}, {r['threads']} threads), "
        f"LM {r['lm_params_m']:.1f} M params, load {r['load_s']:.1f} s"
    )
    rows: list[tuple[str, str]] = []
    if "engine" in r:
        e = r["engine"]
        rows += [
            ("first chunk (median)", f"{e['first_chunk_ms']:.1f} ms"),
            ("whole sentence (median)", f"{e['total_ms']:.1f} ms"),
            ("real-time factor (median)", f"{e['rtf']:.3f}"),
            ("chunk sizes", ", ".join(f"{ms:.0f} ms" for ms in e["chunk_ms"])),
        ]
    lm = r["lm"]
    rows += [
        (f"LM prefill {lm['prefill_tokens']} tokens", f"{lm['prefill_ms']:.1f} ms"),
        ("LM decode step, eager + HF cache", f"{lm['eager_step_ms']:.2f} ms"),
    ]
    if "graph_step_ms" in lm:
        rows.append(("LM decode step, CUDA graph", f"{lm['graph_step_ms']:.2f} ms"))
    if "sampler" in r:
        sp = r["sampler"]
        rows.append(
            (
                "token sampling: upstream / tensor (median)",
                f"{sp['upstream_ms']:.3f} / {sp['tensor_ms']:.3f} ms ({sp['ratio']:.1f}x)",
            )
        )
    for v in r["vocoder"]:
        rows.append(
            (
                f"chunk {v['chunk']} ({v['tokens']} tokens): flow / HiFT",
                f"{v['flow_ms']:.1f} / {v['hift_ms']:.1f} ms",
            )
        )
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")


if __name__ == "__main__":
    sys.exit(main())
