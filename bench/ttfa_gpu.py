"""The synthesize stage's first chunk on a GPU with the engine's CUDA graphs (LM step + flow
estimator), then TTFA composed from it and the other stages' measured files (bench/ttfa_stages.py).

    python bench/ttfa_gpu.py --work /tmp/gpu --out DIR [--runs 10]

1. bandwidth (torch copy of 2 GiB, read + write), the floor's denominator
2. a real-size random-weight CosyVoice2-0.5B (built if missing), fp16, loaded with graphs off
3. the flow estimator graphed against eager on the real model (fp16, rel L2)
4. first chunk / whole sentence: eager, LM graphed, LM + flow graphed, at first_hop 15 / 10 / 5
5. one first chunk's flow: wall ms, CUDA kernels, host syncs (eager vs graphed)
6. floors (bytes / bandwidth) and the composed TTFA with translate's 7B first clause and playback's
   start latency from bench/results/
Writes DIR/ttfa-gpu.json and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import ttfa_stages  # noqa: E402
from bench.synth_gpu import SENTENCE, floor  # noqa: E402
from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions  # noqa: E402
from nodes.synthesize.cosyvoice.flow_graph import GraphEstimator, static_forward  # noqa: E402
from nodes.synthesize.cosyvoice.hift_graph import model_streaming_shapes  # noqa: E402
from nodes.synthesize.cosyvoice.sampling import upstream_sampler  # noqa: E402
from nodes.synthesize.cosyvoice.stream import TOP_K, autocast_for  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bandwidth_gbs() -> float:
    a = torch.empty(1 << 30, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del a, b
    return 2 * (1 << 31) / statistics.median(times) / 1e9


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def start_margin_ms(arrivals_ms: list[float], audio_ms: list[float]) -> float:
    """How much earlier than needed each chunk came, at worst, if playback starts with the first:
    chunk i is due when the audio before it has played. Negative: the device would starve."""
    played = arrivals_ms[0] + audio_ms[0]
    worst = played  # one chunk only: nothing can starve
    for t, d in zip(arrivals_ms[1:], audio_ms[1:], strict=True):
        worst = min(worst, played - t)
        played += d
    return worst


CUTS: dict[str, tuple[str, dict[str, Any]]] = {  # --cuts: name -> (label, EngineOptions changes)
    # each cut sets both compiles: the graph classes compile (or restore) the modules in place
    "base": ("lm+flow-graph", {"graph_hift": False, "compile_flow": False, "compile_lm": False}),
    "hift": ("lm+flow+hift-graph", {"graph_hift": True, "compile_flow": False, "compile_lm": False}),
    "compile": (
        "lm+flow(compiled)+hift-graph",
        {"graph_hift": True, "compile_flow": True, "compile_lm": False},
    ),
    "lm-compile": (
        "lm(compiled)+flow+hift-graph",
        {"graph_hift": True, "compile_flow": False, "compile_lm": True},
    ),
    "compile-both": (
        "lm(compiled)+flow(compiled)+hift-graph",
        {"graph_hift": True, "compile_flow": True, "compile_lm": True},
    ),
}


def hift_prepare_ab(folder: Path, n_mel: int = 20, runs: int = 30) -> dict[str, float]:
    """HiFT's eager first-chunk call as upstream loads it (weight norm recomputed, CPU window and
    harmonics copied each call) against nodes/cosyvoice_load.prepare_hift's, alternating."""
    from nodes.synthesize.cosyvoice.load import build_sections, load_hift_weights, prepare_hift

    def load() -> Any:
        hift = build_sections(folder, ["hift"])["hift"]
        load_hift_weights(hift, folder)
        return hift

    upstream, prepared = load(), load()
    prepare_hift(prepared)
    upstream.cuda().eval()
    prepared.cuda().eval()
    mel = torch.randn(1, 80, n_mel, device="cuda")
    times: dict[str, list[float]] = {"upstream": [], "prepared": []}
    for i in range(runs + 3):
        for name, h in (("upstream", upstream), ("prepared", prepared)):
            sync()
            t0 = time.perf_counter()
            h.inference(speech_feat=mel, cache_source=torch.zeros(1, 1, 0, device="cuda"))
            sync()
            if i >= 3:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {f"{k}_ms_p50": statistics.median(v) for k, v in times.items()}


def run_engine(engine: CosyVoiceEngine, runs: int) -> dict[str, Any]:
    """First chunk (wall, text given at once) and the whole sentence, `runs` times after a warm-up;
    per run, the margin by which later chunks beat the audio before them (start_margin_ms)."""
    list(engine.synthesize(SENTENCE))
    first, total, audio, parts, margins = [], [], [], [], []
    pcm0: Any = None
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        chunks: list[Any] = []
        arrivals: list[float] = []
        for c in engine.synthesize(SENTENCE):
            arrivals.append((time.perf_counter() - t0) * 1e3)
            if not chunks:
                first.append(arrivals[0])
                parts.append(c.timings)
                pcm0 = c.pcm
            chunks.append(c)
        total.append((time.perf_counter() - t0) * 1e3)
        durations = [c.pcm.size / engine.sample_rate_hz * 1e3 for c in chunks]
        audio.append(sum(durations))
        margins.append(start_margin_ms(arrivals, durations))
    return {
        "first_chunk_ms_p50": statistics.median(first),
        "first_chunk_ms_p95": pct(first, 0.95),
        "first_chunk_ms_all": [round(x, 2) for x in first],
        "first_chunk_parts_p50": {
            k: statistics.median(p[k] for p in parts) for k in ("lm_ms", "lm_steps", "flow_ms", "hift_ms")
        },
        "first_chunk_audio_ms": pcm0.size / engine.sample_rate_hz * 1e3 if pcm0 is not None else 0.0,
        "start_margin_ms_min": min(margins),
        "start_margin_ms_p50": statistics.median(margins),
        "total_ms_p50": statistics.median(total),
        "audio_ms": statistics.median(audio),
        "rtf": statistics.median(t / a for t, a in zip(total, audio, strict=True)),
        "first_pcm": pcm0,
    }


def flow_check(engine: CosyVoiceEngine, inner: Any) -> dict[str, float]:
    """Graph replay vs eager upstream forward on the real model, first-chunk-like shapes, fp16."""
    m = engine.model
    wrapper = GraphEstimator(inner)
    errs = {}
    with torch.inference_mode(), autocast_for(m):
        for n, streaming in ((30, True), (80, True), (130, False)):
            g = torch.Generator().manual_seed(n)

            def r(*shape: int, gen: torch.Generator = g) -> torch.Tensor:
                return torch.randn(*shape, generator=gen).to("cuda", m.dtype)

            x, mu, cond, spks = r(2, 80, n), r(2, 80, n), r(2, 80, n), r(2, 80)
            mask = torch.ones(2, 1, n, device="cuda", dtype=m.dtype)
            t = torch.rand(2, generator=g).to("cuda", m.dtype)
            ref = inner(x, mask, mu, t, spks, cond, streaming=streaming).float()
            same = static_forward(inner, x, mask, mu, t, spks, cond, streaming).float()
            got = wrapper(x, mask, mu, t, spks, cond, streaming=streaming).float()
            errs[f"static_vs_upstream_{n}_{streaming}"] = float((same - ref).norm() / ref.norm())
            errs[f"graph_vs_upstream_{n}_{streaming}"] = float((got - ref).norm() / ref.norm())
    return errs


def flow_profile(engine: CosyVoiceEngine, tokens: int = 18, runs: int = 10) -> dict[str, Any]:
    from bench.flow_profile import profile

    m = engine.model
    dev = m.device
    gen = torch.Generator().manual_seed(0)
    tok = torch.randint(0, m.params["speech_token_size"], (1, tokens), generator=gen).to(dev, torch.int32)
    emb = engine.bank.get("").embedding.to(dev).float()
    zero = torch.tensor([0], dtype=torch.int32, device=dev)

    def chunk() -> None:
        with torch.inference_mode(), autocast_for(m):
            m.flow.inference(
                token=tok,
                token_len=torch.tensor([tokens], dtype=torch.int32, device=dev),
                prompt_token=torch.zeros(1, 0, dtype=torch.int32, device=dev),
                prompt_token_len=zero,
                prompt_feat=torch.zeros(1, 0, m.params["mel_bins"], device=dev),
                prompt_feat_len=zero,
                embedding=emb,
                streaming=True,
                finalize=False,
            )

    chunk()
    times = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        chunk()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"wall_ms_p50": statistics.median(times), **profile(chunk)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--hops", default="15,10,5")
    ap.add_argument(
        "--skip-eager", action="store_true", help="only the graphed variants (the eager ones take minutes)"
    )
    ap.add_argument("--skip-upstream-sampler", action="store_true", help="no before/after of the sampler")
    ap.add_argument(
        "--cuts", default="base,hift,compile,compile-both", help=f"stacked variants, of {','.join(CUTS)}"
    )
    args = ap.parse_args(argv)
    from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2

    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
        },
        "sentence": SENTENCE,
        "command": "python bench/ttfa_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    try:
        import transformers

        res["versions"]["transformers"] = transformers.__version__
    except ImportError:
        pass
    gbs = bandwidth_gbs()
    res["bandwidth_gbs"] = round(gbs, 1)
    print(f"bandwidth {gbs:.0f} GB/s", flush=True)
    folder = args.work / "cosyvoice2-real"
    t0 = time.perf_counter()
    if not (folder / "llm.pt").exists():
        write_random_cosyvoice2(folder, size="real")
    res["build_s"] = round(time.perf_counter() - t0, 1)
    opts = EngineOptions(device="cuda", deadline_s=600.0, max_token_text_ratio=4.0, cuda_graphs="false")
    t0 = time.perf_counter()
    engine = CosyVoiceEngine(folder, opts)
    res["load_s"] = round(time.perf_counter() - t0, 1)
    res["dtype"] = str(engine.model.dtype)
    inner = engine.model.flow.decoder.estimator
    print(f"built {res['build_s']} s, loaded {res['load_s']} s", flush=True)
    res["flow_check"] = flow_check(engine, inner)
    res["hift_prepare_ab"] = hift_prepare_ab(folder)
    print("hift eager, upstream vs prepared:", json.dumps(res["hift_prepare_ab"]), flush=True)
    print("flow check", json.dumps(res["flow_check"]), flush=True)

    variants: dict[str, Any] = {}
    pcm: dict[str, Any] = {}

    def bench(name: str, runs: int, **changes: Any) -> None:
        engine.options = dataclasses.replace(engine.options, **changes)
        r = run_engine(engine, runs)
        pcm[name] = r.pop("first_pcm")
        r.update(graphs=engine.graphs, first_hop_tokens=engine.options.first_hop_tokens, runs=runs)
        variants[name] = r
        print(name, json.dumps({k: v for k, v in r.items() if k != "first_chunk_ms_all"}), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)  # what ran so far survives a run cut short
        partial = json.dumps({**res, "variants": variants}, indent=1, default=str)
        (args.out / "ttfa-gpu-partial.json").write_text(partial + "\n", encoding="utf-8")

    hops = [int(h) for h in args.hops.split(",")]
    if not args.skip_eager:
        bench("eager hop15", 3, first_hop_tokens=15)
        res["flow_profile eager"] = flow_profile(engine)
        engine.options = dataclasses.replace(engine.options, cuda_graphs="true", graph_flow=False)
        t0 = time.perf_counter()
        engine._build_graphs()
        res["lm_graph_warm_s"] = round(time.perf_counter() - t0, 2)
        bench("lm-graph hop15", 5, first_hop_tokens=15)
    # the cuts, stacked, each benched at every hop in this one run: graphs for the LM and the
    # flow estimator (base), + the vocoder's streaming shapes, + the estimator torch.compile'd
    for cut in args.cuts.split(","):
        label, changes = CUTS[cut]
        engine.options = dataclasses.replace(engine.options, cuda_graphs="true", graph_flow=True, **changes)
        t0 = time.perf_counter()
        try:
            engine._build_graphs()
        except Exception as exc:  # a cut that fails (a compile error, say) is recorded, not fatal
            res[f"failed {label}"] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"{label} FAILED: {res[f'failed {label}']}", flush=True)
            continue
        res[f"warm_s {label}"] = round(time.perf_counter() - t0, 2)
        res[f"graphs {label}"] = engine.graphs
        print(f"{label}: graphs {engine.graphs}, warmed in {res[f'warm_s {label}']} s", flush=True)
        est = engine.model.flow.decoder.estimator
        res[f"flow_graphs_captured {label}"] = getattr(est, "captures", 0)
        if cut != "hift":  # the flow is what changed
            res[f"flow_profile {label}"] = flow_profile(engine)
            print(f"flow profile {label}: {json.dumps(res[f'flow_profile {label}'])}", flush=True)
        # before / after the sampler without host syncs (nodes/cosyvoice_sampling), side by side
        if cut == "base" and not args.skip_upstream_sampler:
            engine.sampler = upstream_sampler(engine.model.llm, TOP_K)
            for h in hops:
                bench(f"{label} upstream-sampler hop{h}", args.runs, first_hop_tokens=h)
            engine.sampler = None
        for h in hops:
            engine.options = dataclasses.replace(engine.options, first_hop_tokens=h)
            if engine._vocode is not None:
                # the first chunk's shape at this hop (load captured the configured one)
                engine._vocode.warm(model_streaming_shapes(engine.model, h, engine.options.hop_tokens)[:1])
            bench(f"{label} hop{h}", args.runs, first_hop_tokens=h)
    est = engine.model.flow.decoder.estimator
    import numpy as np

    def rel_l2(a: Any, b: Any) -> float | None:
        if a is None or b is None or a.shape != b.shape:
            return None
        return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(a)), 1e-12))

    res["first_pcm_rel_l2_flow_graph_vs_eager"] = rel_l2(
        pcm.get("lm-graph hop15"), pcm.get("lm+flow-graph hop15")
    )
    for name in pcm:  # each cut's first chunk against the base graphs' at the same hop (one seed)
        base = pcm.get("lm+flow-graph " + name.rsplit(" ", 1)[-1])
        if name.startswith("lm") and "upstream" not in name and not name.startswith("lm+flow-graph"):
            res.setdefault("first_pcm_rel_l2_vs_base", {})[name] = rel_l2(base, pcm[name])
    res["flow_replays"] = getattr(est, "replays", 0)
    res["flow_eager_calls"] = getattr(est, "eager_calls", 0)
    res["variants"] = variants
    for v in variants.values():
        v["floor"] = floor(engine, v["first_chunk_parts_p50"]["lm_steps"], gbs)
        v["ratio_p50"] = round(v["first_chunk_ms_p50"] / v["floor"]["first_chunk_ms"], 1)

    results = REPO / "bench" / "results"
    compositions = {}
    for name in (n for n in variants if "graph" in n and "upstream" not in n):
        v = variants[name]
        stages = {
            "ingest": ttfa_stages.from_ingest(results / "ingest.json"),
            "translate": ttfa_stages.from_translate(results / "translate-gpu.json"),
            "synthesize": ttfa_stages.stage(
                v["first_chunk_ms_p50"],
                v["first_chunk_ms_p95"],
                f"this run: {name}",
                v["floor"]["first_chunk_ms"],
            ),
            "playback": ttfa_stages.from_playback(results / "playback.json"),
        }
        compositions[name] = {"stages": stages, "ttfa": ttfa_stages.compose(stages)}
    res["ttfa_composed"] = compositions
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ttfa-gpu.json").write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")

    print(
        "\n| variant | first chunk p50 ms | p95 | LM ms | LM steps | flow ms | HiFT ms | floor ms | ratio "
        "| start margin min ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, v in variants.items():
        p = v["first_chunk_parts_p50"]
        print(
            f"| {name} | {v['first_chunk_ms_p50']:.1f} | {v['first_chunk_ms_p95']:.1f} | {p['lm_ms']:.1f} | "
            f"{p['lm_steps']:.0f} | {p['flow_ms']:.1f} | {p['hift_ms']:.1f} | "
            f"{v['floor']['first_chunk_ms']:.2f} | {v['ratio_p50']} | {v['start_margin_ms_min']:.0f} |"
        )
    for k in [k for k in res if k.startswith("flow_profile")]:
        print(f"{k}: {json.dumps(res[k])}")
    for name, c in compositions.items():
        print(f"\nTTFA composed with synthesize = {name}\n" + ttfa_stages.table(c["stages"], c["ttfa"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
