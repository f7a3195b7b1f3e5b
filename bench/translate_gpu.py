"""The translate bench on a lent GPU machine: real-size random-weight Qwen2.5 GGUFs, built there.

Stages (each one also usable alone; all state lives under --work, so a later call resumes):
  bandwidth  device-to-device copy through torch (bytes read + written / time): the floor's divisor
  7b         Qwen2.5-7B-Instruct's exact tensor shapes, random f16 written with `gguf`
             (models/tiny_gguf.write_random_qwen2_gguf), then Q4_K_M through llama.cpp's own
             quantizer (llama_model_quantize), so block scales and the per-tensor type mix are
             llama.cpp's; the f16 file is deleted after. Its greedy answer to every prompt is
             SCRIPTED_ANSWER (write_random_qwen2_gguf's `answer`), so the pipeline behind it
             (bench/gpu/e2e.sh) gets a Japanese sentence with a 9-token first clause
  7b-write, 7b-quantize  the two halves of 7b (the write needs no llama.cpp, so it can run
             while llama.cpp builds)
  72b        the same for 72B, which does not fit the disk in f16 (145 GB): a 3-layer model of
             72B's shapes is quantized (layer 0 gets Q4_K_M's plain types, layer 2 its
             "more bits" Q6_K types), then an 80-layer Q4_K_M file is written from those
             quantized tensors, each layer taking the types Q4_K_M gives it (use_more_bits)
  bench      bench/translate.py per model in a child process per variant: flash attention
             off/on x CUDA graphs on/off (GGML_CUDA_DISABLE_GRAPHS, read once per process)
  report     one JSON and one markdown table of the medians, with device and versions

    python bench/translate_gpu.py --work /tmp/gpu --vocab FILE.tiktoken [--stages ...]
        [--results bench/results]

The prompt vocabulary is a real byte-level BPE (a tiktoken ranks file, e.g. the one CosyVoice
ships), so prompts have real-world token counts; the weights are random (timing does not
depend on values).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = [  # (label, flash attention, CUDA graphs)
    ("fa-off graphs-on", False, True),
    ("fa-on graphs-on", True, True),
    ("fa-off graphs-off", False, False),
    ("fa-on graphs-off", True, False),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_state(work: Path) -> dict[str, Any]:
    f = work / "state.json"
    return json.loads(f.read_text()) if f.exists() else {}


def save_state(work: Path, state: dict[str, Any]) -> None:
    (work / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def bandwidth() -> dict[str, Any]:
    """Median of 20 copies of 2 GiB, timed with CUDA events, after 3 warm-ups."""
    import torch

    n = 1 << 30  # bf16 elements: 2 GiB
    a = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    assert torch.equal(a[:1000], b[:1000])
    times.sort()
    ms = times[len(times) // 2]
    moved = 2 * a.numel() * a.element_size()
    return {"bytes_moved": moved, "ms": ms, "gbs": moved / (ms / 1e3) / 1e9, "what": "torch copy_ 2 GiB"}


def quantize(src: Path, dst: Path, threads: int) -> float:
    """llama.cpp's own Q4_K_M quantizer; returns seconds."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src}) returned {rc}")
    return time.perf_counter() - t0


# Distinct characters, each one token of the CosyVoice tiktoken vocabulary; 、 after 8 of them.
SCRIPTED_ANSWER = "テスト結果を確認、全件が正常に通りました。"


def write_7b(work: Path, vocab_file: Path) -> dict[str, Any]:
    import dataclasses

    from nodes.translate.llama.tiny import QWEN25_7B, tiktoken_vocab, write_random_qwen2_gguf

    f16 = work / "qwen2.5-7b-random-f16.gguf"
    t0 = time.perf_counter()
    write_random_qwen2_gguf(f16, QWEN25_7B, seed=0, vocab=tiktoken_vocab(vocab_file), answer=SCRIPTED_ANSWER)
    return {
        "f16": str(f16),
        "dims": dataclasses.asdict(QWEN25_7B),
        "answer": SCRIPTED_ANSWER,
        "f16_bytes": f16.stat().st_size,
        "write_f16_s": round(time.perf_counter() - t0, 1),
    }


def quantize_7b(work: Path, written: dict[str, Any]) -> dict[str, Any]:
    f16, q4 = Path(written["f16"]), work / "qwen2.5-7b-random-Q4_K_M.gguf"
    q_s = quantize(f16, q4, os.cpu_count() or 8)
    f16.unlink()
    return {**written, "path": str(q4), "quantize_s": round(q_s, 1), "bytes": q4.stat().st_size}


def make_model(work: Path, size: str, vocab_file: Path) -> dict[str, Any]:
    import dataclasses

    from nodes.translate.llama.tiny import QWEN25_72B, tiktoken_vocab, write_random_qwen2_gguf

    if size == "7b":
        return quantize_7b(work, write_7b(work, vocab_file))
    vocab = tiktoken_vocab(vocab_file)
    q4 = work / f"qwen2.5-{size}-random-Q4_K_M.gguf"
    threads = os.cpu_count() or 8
    dims3 = dataclasses.replace(QWEN25_72B, n_layer=3)
    f16 = work / "qwen2.5-72b-3layer-random-f16.gguf"
    q3 = work / "qwen2.5-72b-3layer-random-Q4_K_M.gguf"
    t0 = time.perf_counter()
    write_random_qwen2_gguf(f16, dims3, seed=0, vocab=vocab)
    write_s = time.perf_counter() - t0
    q_s = quantize(f16, q3, threads)
    f16.unlink()
    t0 = time.perf_counter()
    replicate_layers(q3, q4, QWEN25_72B.n_layer, QWEN25_72B.name + "-layers-replicated")
    rep_s = time.perf_counter() - t0
    q3.unlink()
    return {
        "path": str(q4),
        "dims": dataclasses.asdict(QWEN25_72B),
        "write_f16_3layer_s": round(write_s, 1),
        "quantize_3layer_s": round(q_s, 1),
        "replicate_s": round(rep_s, 1),
        "bytes": q4.stat().st_size,
        "note": "80 layers written from a 3-layer Q4_K_M quantization of 72B-shaped random weights",
    }


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's rule (llama-quant.cpp) for which layers' attn_v/ffn_down Q4_K_M makes Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def replicate_layers(src: Path, dst: Path, n_layer: int, name: str) -> None:
    """An n_layer GGUF from a quantized 3-layer one: layer i copies layer 2 (Q6_K attn_v and
    ffn_down) where Q4_K_M gives layer i more bits, else layer 0; other tensors as they are."""
    import gguf
    import numpy as np

    r = gguf.GGUFReader(src)
    src_layers = int(r.fields["qwen2.block_count"].contents())
    if src_layers != 3 or use_more_bits(0, 3) or not use_more_bits(2, 3):
        raise ValueError(f"{src}: expected 3 layers with plain layer 0 and more-bits layer 2")
    tensors = {t.name: t for t in r.tensors}
    w = gguf.GGUFWriter(str(dst), "qwen2")
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.name", "qwen2.block_count"):
            continue
        vtype = f.types[0]
        value = f.contents()
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, value, vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(key, value, vtype)
    w.add_name(name)
    w.add_block_count(n_layer)
    order: list[tuple[str, Any]] = [("token_embd.weight", tensors["token_embd.weight"])]
    for i in range(n_layer):
        src_i = 2 if use_more_bits(i, n_layer) else 0
        for t in r.tensors:
            if t.name.startswith(f"blk.{src_i}."):
                order.append((f"blk.{i}." + t.name.split(".", 2)[2], t))
    order += [(n, tensors[n]) for n in ("output_norm.weight", "output.weight") if n in tensors]
    for tname, t in order:
        data = np.asarray(t.data)
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor_info(tname, data.shape, data.dtype, data.nbytes)
        else:
            w.add_tensor_info(tname, data.shape, np.dtype(np.uint8), data.nbytes, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _tname, t in order:
        w.write_tensor_data(np.asarray(t.data))
    w.close()


def run_bench(work: Path, label: str, model: str, gbs: float, sentences: int) -> dict[str, Any]:
    rows = {}
    for name, fa, graphs in VARIANTS:
        out = work / f"translate-{label}-{name.replace(' ', '_')}.json"
        env = dict(os.environ)
        env.pop("GGML_CUDA_DISABLE_GRAPHS", None)
        if not graphs:
            env["GGML_CUDA_DISABLE_GRAPHS"] = "1"
        cmd = [sys.executable, str(ROOT / "bench" / "translate.py"), "--model", model, "--n-gpu-layers", "-1"]
        cmd += ["--sentences", str(sentences), "--bandwidth-gbs", f"{gbs:.1f}", "--out", str(out)]
        if fa:
            cmd.append("--flash-attn")
        log(f"{label} {name}: {' '.join(cmd)}")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, text=True, capture_output=True)
        print(proc.stdout[-3000:], proc.stderr[-3000:], flush=True)
        if proc.returncode != 0:
            rows[name] = {"error": f"exit {proc.returncode}", "stderr": proc.stderr[-2000:]}
            continue
        res = json.loads(out.read_text())
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        res["command"] = (
            ("GGML_CUDA_DISABLE_GRAPHS=1 " if not graphs else "")
            + "python bench/translate.py "
            + " ".join(cmd[2:])
        )
        rows[name] = res
    return rows


def versions() -> dict[str, Any]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"({exc})"

    import llama_cpp
    import torch

    return {
        "gpu": sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]),
        "nvcc": " ".join(sh(["nvcc", "--version"]).splitlines()[-1:]),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "llama_cpp_python": llama_cpp.__version__,
        "llama_system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
    }


def report(state: dict[str, Any], results: Path) -> None:
    keys = [
        "prompt_tokens",
        "evaluated_cached",
        "evaluated_cold",
        "prefill_cold_ms",
        "prefill_cached_ms",
        "ms_per_token",
        "ttfc8_ms",
    ]
    v = state["versions"]
    out: dict[str, Any] = {
        "versions": state.get("versions"),
        "bandwidth": state.get("bandwidth"),
        "models": {},
    }
    lines = [
        "# translate on the GPU (random-weight Qwen2.5 GGUFs, Q4_K_M, all layers on the GPU)",
        "",
        f"Device: {v['gpu']}; {v['nvcc']}; torch {v['torch']} (CUDA {v['torch_cuda']}); "
        f"llama-cpp-python {v['llama_cpp_python']} built with CUDA for sm_90; Python {v['python']}.",
        f"Bandwidth (torch device-to-device copy, read + write): {state['bandwidth']['gbs']:.0f} GB/s.",
        "",
        "Medians over the sentences of bench/translate.py (n_ctx 4096, greedy, max 64 tokens). "
        "ttfc8: prompt tokenized, cached prefill, 8 tokens decoded. Floor: model bytes / bandwidth per "
        "token; 8 of them per 8-token clause.",
        "",
        "| model | MB | variant | sys prompt tok | prompt tok | eval cached | eval cold | prefill cold ms "
        "| prefill cached ms | ms/token | ttfc8 ms | floor ms/token | ratio tok | ratio ttfc8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in ("7b", "72b"):
        runs = state.get(f"bench_{label}")
        if not runs:
            continue
        out["models"][label] = {"model": state.get(f"model_{label}"), "variants": {}}
        for name, res in runs.items():
            if "error" in res:
                out["models"][label]["variants"][name] = res
                lines.append(f"| {label} | | {name} | failed: {res['error']} |")
                continue
            med, fl = res["median"], res["floor"]
            out["models"][label]["variants"][name] = {
                "median": med,
                "floor": fl,
                "command": res["command"],
                "load_s": res["load_s"],
                "sentences": len(res["sentences"]),
                "system_prompt_tokens": res["system_prompt_tokens"],
                "backend": res["backend"],
                "flash_attn": res.get("flash_attn"),
                "cuda_graphs": res.get("cuda_graphs"),
            }
            cells = [label, f"{res['model_bytes'] / 1e6:.0f}", name, str(res["system_prompt_tokens"])]
            cells += [f"{med[k]:g}" for k in keys]
            cells += [f"{fl['ms_per_token']:.3g}", f"{fl['ratio_ms_per_token']:g}", f"{fl['ratio_ttfc8']:g}"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Commands (on the GPU machine):", ""]
    for label in ("7b", "72b"):
        for name, res in (state.get(f"bench_{label}") or {}).items():
            if "command" in res:
                lines.append(f"- {label} {name}: `{res['command']}`")
    results.mkdir(parents=True, exist_ok=True)
    (results / "translate-gpu.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    (results / "translate-gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--vocab", type=Path, required=True, help="tiktoken ranks file for the prompt vocabulary")
    ap.add_argument("--stages", default="bandwidth,7b,bench7b,report")
    ap.add_argument("--sentences-7b", type=int, default=12)
    ap.add_argument("--sentences-72b", type=int, default=4)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    state = load_state(args.work)
    for stage in args.stages.split(","):
        log(f"stage {stage}")
        t0 = time.perf_counter()
        if stage == "bandwidth":
            state["bandwidth"] = bandwidth()
        elif stage in ("7b", "72b"):
            state[f"model_{stage}"] = make_model(args.work, stage, args.vocab)
        elif stage == "7b-write":
            state["model_7b"] = write_7b(args.work, args.vocab)
        elif stage == "7b-quantize":
            state["model_7b"] = quantize_7b(args.work, state["model_7b"])
        elif stage in ("bench7b", "bench72b"):
            label = stage[5:]
            n = args.sentences_7b if label == "7b" else args.sentences_72b
            gbs = state["bandwidth"]["gbs"]
            state[f"bench_{label}"] = run_bench(args.work, label, state[f"model_{label}"]["path"], gbs, n)
        elif stage == "report":
            state["versions"] = versions()
            report(state, args.results)
        else:
            raise SystemExit(f"unknown stage {stage}")
        save_state(args.work, state)
        key = {"7b": "model_7b", "72b": "model_72b"}.get(stage.split("-")[0], stage)
        took = time.perf_counter() - t0
        log(f"stage {stage} done in {took:.1f} s: {json.dumps(state.get(key), default=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
