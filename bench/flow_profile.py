"""Where CosyVoice2's flow spends a first chunk on a GPU: wall time of the chunk, of one estimator
(CFM decoder) call, the number of CUDA kernels each launches and their summed GPU time (torch
profiler), and how many host syncs the chunk makes. If GPU time is a small part of wall time the
flow is launch/host bound, and CUDA graphs (or torch.compile) are the cut.

    python bench/flow_profile.py --folder /tmp/gpu/cosyvoice2-real [--tokens 18] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.stream import autocast_for


def timed(fn: Any, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile(fn: Any) -> dict[str, float]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    fn()
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        fn()
        torch.cuda.synchronize()
    kernels = [e for e in p.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    syncs = [
        e for e in p.events() if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "aten::item")
    ]
    memcpy = [e for e in p.events() if "Memcpy" in e.name or "memcpy" in e.name]
    return {
        "cuda_kernels": float(len(kernels)),
        "gpu_ms": sum(e.device_time for e in kernels) / 1e3,
        "host_syncs": float(len(syncs)),
        "memcpy_events": float(len(memcpy)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--tokens", type=int, default=18)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    engine = CosyVoiceEngine(args.folder, EngineOptions(device="cuda"))
    m = engine.model
    dev = m.device
    v = engine.bank.get("")
    gen = torch.Generator().manual_seed(0)
    tok = torch.randint(0, m.params["speech_token_size"], (1, args.tokens), generator=gen).to(
        dev, torch.int32
    )
    emb = v.embedding.to(dev).float()
    empty_tok = torch.zeros(1, 0, dtype=torch.int32, device=dev)
    empty_feat = torch.zeros(1, 0, m.params["mel_bins"], device=dev)
    zero = torch.tensor([0], dtype=torch.int32, device=dev)

    def chunk() -> None:
        with torch.inference_mode(), autocast_for(m):
            m.flow.inference(
                token=tok,
                token_len=torch.tensor([tok.shape[1]], dtype=torch.int32, device=dev),
                prompt_token=empty_tok,
                prompt_token_len=zero,
                prompt_feat=empty_feat,
                prompt_feat_len=zero,
                embedding=emb,
                streaming=True,
                finalize=False,
            )

    # one estimator call at the first chunk's shape, with the inputs solve_euler builds
    captured: dict[str, Any] = {}
    est = m.flow.decoder.estimator
    original = est.forward

    def spy(*a: Any, **k: Any) -> Any:
        captured.setdefault("args", (a, k))
        return original(*a, **k)

    est.forward = spy
    chunk()
    est.forward = original
    a, k = captured["args"]

    def estimator() -> None:
        with torch.inference_mode(), autocast_for(m):
            est(*a, **k)

    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "tokens": args.tokens,
        "mel_frames_in": int(a[0].shape[2]),
        "dtype": str(m.dtype),
        "chunk_wall_ms": timed(chunk, args.runs),
        "estimator_wall_ms": timed(estimator, args.runs),
        "chunk_profile": profile(chunk),
        "estimator_profile": profile(estimator),
        "estimator_params_m": sum(p.numel() for p in est.parameters()) / 1e6,
        "encoder_params_m": sum(p.numel() for p in m.flow.encoder.parameters()) / 1e6,
    }
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
