"""The synthesize engine on a GPU with its LM step eager and replayed from CUDA graphs
(nodes/cosyvoice_graph.GraphLmStep), on a real-size random CosyVoice2-0.5B folder.

    python bench/synth_gpu.py --work /tmp/gpu --bandwidth-gbs 2992 [--runs 10] [--size real]

1. correctness: the graphed step against the eager one over the same 40 inputs (log-prob error)
2. first chunk and whole sentence through CosyVoiceEngine.synthesize, eager, then graphed
   (speech_tokens' `step` set for this process: the engine has no option for it yet), with the
   engine's own per-chunk timings (LM ms and steps, flow ms, HiFT ms)
3. floor of the first chunk: bytes the LM, flow and HiFT must read (weights once per LM step,
   per flow ODE step, once for HiFT) / bandwidth
Writes <work>/synth-gpu.json and prints a table.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nodes.synthesize.cosyvoice.stream as stream
from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.lm_graph import GraphLmStep

SENTENCE = ["テストを実行しました、", "すべてのテストが通りました。"]
FLOW_ODE_STEPS = 10  # CausalMaskedDiffWithXvec.inference runs its CFM decoder with n_timesteps=10


def check_graph(engine: CosyVoiceEngine, graph: GraphLmStep, steps: int = 40) -> dict[str, float]:
    """Same inputs through eager LmStep and the graph: max |logp diff| and argmax agreement."""
    m = engine.model
    llm = m.llm
    gen = torch.Generator().manual_seed(1)
    text = torch.randint(0, 1000, (5,), generator=gen).tolist()
    toks = torch.randint(0, int(llm.speech_token_size), (steps,), generator=gen).tolist()
    emb_t = llm.llm.model.model.embed_tokens
    dev = m.device

    def inputs() -> list[torch.Tensor]:
        first = torch.cat(
            [
                llm.llm_embedding.weight[llm.sos_eos].reshape(1, 1, -1),
                emb_t(torch.tensor([text], device=dev)),
            ],
            dim=1,
        )
        return [first] + [llm.speech_embedding(torch.tensor([[t]], device=dev)) for t in toks]

    out: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for name, step in (("eager", stream.LmStep(m)), ("graph", graph)):
            cache: Any = None
            rows = []
            for x in inputs():
                logp, cache = step(x, cache)
                rows.append(logp.float())
            out[name] = rows
    e, g = torch.stack(out["eager"]), torch.stack(out["graph"])
    return {
        "max_abs_diff": float((e - g).abs().max()),
        "rel_l2": float((e - g).norm() / e.norm()),
        "argmax_agree": float((e.argmax(-1) == g.argmax(-1)).float().mean()),
        "steps": float(len(out["eager"])),
    }


def run_engine(engine: CosyVoiceEngine, runs: int) -> dict[str, Any]:
    next(iter(engine.synthesize(SENTENCE)))  # warm-up
    first, total, audio, chunk_t = [], [], [], []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        chunks: list[Any] = []
        for c in engine.synthesize(SENTENCE):
            if not chunks:
                first.append((time.perf_counter() - t0) * 1e3)
            chunks.append(c)
        total.append((time.perf_counter() - t0) * 1e3)
        audio.append(sum(c.pcm.size for c in chunks) / engine.sample_rate_hz * 1e3)
        chunk_t.append([c.timings for c in chunks])
    first_timings = [ct[0] for ct in chunk_t]
    return {
        "first_chunk_ms": statistics.median(first),
        "first_chunk_ms_all": [round(x, 2) for x in first],
        "total_ms": statistics.median(total),
        "audio_ms": statistics.median(audio),
        "rtf": statistics.median(t / a for t, a in zip(total, audio, strict=True)),
        "chunks": len(chunk_t[-1]),
        "first_chunk_parts": {
            k: statistics.median(t[k] for t in first_timings)
            for k in ("lm_ms", "lm_steps", "flow_ms", "hift_ms")
        },
        "chunk_timings_last_run": chunk_t[-1],
    }


def step_ms(step: Any, engine: CosyVoiceEngine, n: int = 50) -> float:
    """Median wall ms of one single-embedding step after a 120-embedding prefill (synchronized)."""
    llm, dev = engine.model.llm, engine.model.device
    x0 = torch.randn(
        1, 120, llm.llm_embedding.weight.shape[1], device=dev, dtype=llm.llm_embedding.weight.dtype
    )
    x = llm.speech_embedding(torch.tensor([[7]], device=dev))
    times = []
    with torch.inference_mode():
        _, cache = step(x0, None)
        for _ in range(n):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            _, cache = step(x, cache)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[5:])


def floor(engine: CosyVoiceEngine, lm_steps: float, gbs: float) -> dict[str, float]:
    m = engine.model

    def nbytes(mod: torch.nn.Module, skip: tuple[str, ...] = ()) -> int:
        return sum(p.numel() * p.element_size() for n, p in mod.named_parameters() if not n.startswith(skip))

    # per LM step: the trunk's layers and final norm plus llm_decoder (embedding tables: a row each)
    lm = nbytes(m.llm.llm.model.model, ("embed_tokens",)) + nbytes(m.llm.llm_decoder)
    flow = nbytes(m.flow.decoder) * FLOW_ODE_STEPS + nbytes(m.flow, ("decoder",))
    hift = nbytes(m.hift)
    per_ms = 1e3 / (gbs * 1e9)
    return {
        "lm_bytes_per_step": lm,
        "flow_bytes_per_chunk": flow,
        "hift_bytes_per_chunk": hift,
        "lm_ms_per_step": lm * per_ms,
        "first_chunk_ms": (lm * lm_steps + flow + hift) * per_ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--size", default="real")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--bandwidth-gbs", type=float, required=True)
    ap.add_argument("--first-hop", type=int, default=15)
    args = ap.parse_args(argv)
    from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2

    folder = args.work / f"cosyvoice2-{args.size}"
    t0 = time.perf_counter()
    if not (folder / "llm.pt").exists():
        write_random_cosyvoice2(folder, size=args.size)
    build_s = time.perf_counter() - t0
    opts = EngineOptions(
        device="cuda", first_hop_tokens=args.first_hop, deadline_s=600.0, max_token_text_ratio=4.0
    )
    t0 = time.perf_counter()
    engine = CosyVoiceEngine(folder, opts)
    load_s = time.perf_counter() - t0
    m = engine.model
    graph = GraphLmStep(m)
    t0 = time.perf_counter()
    graph.warm()
    warm_s = time.perf_counter() - t0
    res: dict[str, Any] = {
        "size": args.size,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "dtype": str(m.dtype),
        "build_s": build_s,
        "load_s": load_s,
        "graph_warm_s": warm_s,
        "first_hop_tokens": args.first_hop,
        "lm_params_m": sum(p.numel() for p in m.llm.parameters()) / 1e6,
        "flow_params_m": sum(p.numel() for p in m.flow.parameters()) / 1e6,
        "hift_params_m": sum(p.numel() for p in m.hift.parameters()) / 1e6,
    }
    import transformers

    res["transformers"] = transformers.__version__
    res["check"] = check_graph(engine, graph)
    print("graph vs eager:", res["check"], flush=True)
    res["lm_step_ms"] = {"eager": step_ms(stream.LmStep(m), engine), "graph": step_ms(graph, engine)}
    print("LM step:", res["lm_step_ms"], flush=True)
    res["eager"] = run_engine(engine, args.runs)
    print(
        "eager engine:", {k: v for k, v in res["eager"].items() if k != "chunk_timings_last_run"}, flush=True
    )
    original = stream.speech_tokens
    stream.speech_tokens = functools.partial(original, step=graph)
    try:
        res["graph"] = run_engine(engine, args.runs)
    finally:
        stream.speech_tokens = original
    res["graph_replays"] = graph.replays
    print(
        "graphed engine:",
        {k: v for k, v in res["graph"].items() if k != "chunk_timings_last_run"},
        flush=True,
    )
    res["floor"] = floor(engine, res["graph"]["first_chunk_parts"]["lm_steps"], args.bandwidth_gbs)
    res["floor"]["bandwidth_gbs"] = args.bandwidth_gbs
    res["ratio_first_chunk_graph"] = res["graph"]["first_chunk_ms"] / res["floor"]["first_chunk_ms"]
    out = args.work / f"synth-gpu-{args.size}.json"
    out.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print_table(res)
    return 0


def print_table(r: dict[str, Any]) -> None:
    print(f"\nsynthesize on {r['device']}: CosyVoice2 {r['size']} random, {r['dtype']}, torch {r['torch']}")
    print("| | eager LM | graphed LM |\n|---|---|---|")
    e, g = r["eager"], r["graph"]
    lm = r["lm_step_ms"]
    print(f"| LM step ms (after 120-token prefill) | {lm['eager']:.2f} | {lm['graph']:.2f} |")
    for k in ("lm_ms", "lm_steps", "flow_ms", "hift_ms"):
        print(f"| first chunk {k} | {e['first_chunk_parts'][k]:.1f} | {g['first_chunk_parts'][k]:.1f} |")
    print(f"| first chunk ms (wall) | {e['first_chunk_ms']:.1f} | {g['first_chunk_ms']:.1f} |")
    whole = [f"{x['total_ms']:.0f} / {x['audio_ms']:.0f}" for x in (e, g)]
    print(f"| whole sentence ms / audio ms | {whole[0]} | {whole[1]} |")
    f = r["floor"]
    print(
        f"floor: first chunk {f['first_chunk_ms']:.2f} ms (LM {f['lm_ms_per_step']:.3f} ms/step); "
        f"graphed ratio {r['ratio_first_chunk_graph']:.0f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
