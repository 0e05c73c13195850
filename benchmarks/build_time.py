"""Per-stage wall time and peak RSS of `dsedge build`, on the reference checkpoint and on synthetic
checkpoints with the real configurations of DeepSeek-R1-Distill-Qwen 1.5B / 7B / 14B.

    python benchmarks/build_time.py                          # reference + synthetic 1.5B, --bits 4
    python benchmarks/build_time.py --models 7b,14b --bits 4,8
    python benchmarks/build_time.py --models 1.5b --layers 2  # fewer layers (the output says so)

Synthetic checkpoints hold random BF16 weights with the real shapes, written shard by shard
(2 GB shards + model.safetensors.index.json, as on the Hub), so the whole model is never in
memory; they are deleted afterwards. Generation and each build run in fresh subprocesses (a
forked child inherits its parent's RSS high-water mark), each build through the same
`dsedge.build` the CLI calls, with --no-cache and no host latency, so its peak RSS is its own.
ru_maxrss is a high-water mark: "peak RSS" after a stage is the peak reached by the end of it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_QWEN2 = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", max_position_embeddings=131072,
              rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
# config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-{1.5B,7B,14B}
SYNTHETIC = {
    "1.5b": dict(_QWEN2, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936),
    "7b": dict(_QWEN2, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
    "14b": dict(_QWEN2, hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                num_attention_heads=40, num_key_value_heads=8, vocab_size=152064, rope_theta=1000000.0),
}
SHARD_BYTES = 2 * 10**9


def make_synthetic(folder: Path, config: dict) -> int:
    """Write a sharded BF16 checkpoint tensor by tensor; at most one shard is in memory. -> bytes."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from dsedge import reference

    cfg = AutoConfig.for_model(**config)
    with torch.device("meta"):
        names = {k: tuple(p.shape) for k, p in AutoModelForCausalLM.from_config(cfg).state_dict().items()}
    folder.mkdir(parents=True)
    cfg.save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(reference.checkpoint_path() / f, folder / f)
    gen = torch.Generator().manual_seed(0)
    shards, shard, size, total = [], {}, 0, 0

    def flush():
        nonlocal shard, size
        if shard:
            shards.append((f"model-{len(shards) + 1:05d}.safetensors", list(shard)))
            save_file(shard, folder / shards[-1][0], metadata={"format": "pt"})
            shard, size = {}, 0

    for name, shape in names.items():
        if len(shape) == 1:
            t = torch.ones(shape) if "norm" in name else torch.randn(shape, generator=gen) * 0.02
        else:
            t = torch.randn(shape, generator=gen).mul_(shape[-1] ** -0.5)
        t = t.to(torch.bfloat16)
        if size + t.numel() * 2 > SHARD_BYTES:
            flush()
        shard[name] = t
        size += t.numel() * 2
        total += t.numel() * 2
    flush()
    n = len(shards)
    weight_map = {}
    for i, (fname, keys) in enumerate(shards):
        final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        (folder / fname).rename(folder / final)
        weight_map.update({k: final for k in keys})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return total


def _child(model: str | None, bits: int, out: str) -> None:
    """Runs inside the subprocess: one build, printing JSON with per-stage time and peak RSS."""
    import contextlib

    import dsedge
    from dsedge.quantize import config_from_options

    marks = {}

    @contextlib.contextmanager
    def stage(name):
        t = time.perf_counter()
        yield
        marks[name] = {"seconds": round(time.perf_counter() - t, 1),
                       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}

    res = dsedge.build(model, target="orin", quant=config_from_options(bits=bits), output=out, stage=stage,
                       latency=False, use_cache=False)
    r = res.report
    print(json.dumps({"stages": marks, "ppl_change_pct": r["ppl_change_pct"], "size_mb": r["size_mb"],
                      "scope": r["host_plan"]["check_scope"], "fidelity": r["export_fidelity"]["max_abs_diff"]}))


def run(label: str, model: str | None, bits: int, ckpt_bytes: int, tmp: Path) -> dict | None:
    out = tmp / f"art-{bits}"
    cmd = [sys.executable, __file__, "--child", model or "", "--bits", str(bits), "--out", str(out)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if r.returncode:
        print(f"{label} --bits {bits}: FAILED (exit {r.returncode})\n{r.stderr[-3000:]}", flush=True)
        return None
    res = json.loads(r.stdout.strip().splitlines()[-1])
    peak = max(m["peak_rss_mb"] for m in res["stages"].values())
    ppl = "n/a (truncated check)" if res["ppl_change_pct"] is None else f"{res['ppl_change_pct']:+.2f} %"
    print(f"\n{label}, --bits {bits}: {time.perf_counter() - t:.0f} s with start-up, ONNX {res['size_mb'] / 1e3:.2f} GB, "
          f"check scope {res['scope']}, ppl change {ppl}; peak RSS {peak / 1024:.2f} GiB = "
          f"{peak * 2**20 / ckpt_bytes:.2f} x checkpoint ({ckpt_bytes / 1e9:.1f} GB)")
    print(f"  {'stage':<10}{'seconds':>9}{'peak RSS MiB':>14}{'/ ckpt':>8}")
    for name, m in res["stages"].items():
        print(f"  {name:<10}{m['seconds']:>9}{m['peak_rss_mb']:>14}{m['peak_rss_mb'] * 2**20 / ckpt_bytes:>8.2f}")
    sys.stdout.flush()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--generate", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--models", default="reference,1.5b", help="comma list of reference, " + ", ".join(SYNTHETIC))
    ap.add_argument("--bits", default="4", help="comma list of 4, 8, 16")
    ap.add_argument("--layers", type=int, default=None, help="build the synthetic models with only this many layers")
    ap.add_argument("--workdir", default=None, help="where synthetic checkpoints go (default: a temp folder)")
    a = ap.parse_args()
    if a.child is not None:
        return _child(a.child or None, int(a.bits), a.out)
    if a.generate is not None:
        make_synthetic(Path(a.out), json.loads(a.generate))
        return
    bits = [int(b) for b in a.bits.split(",")]
    print(f"host: {os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM")
    for name in a.models.split(","):
        with tempfile.TemporaryDirectory(dir=a.workdir) as d:
            tmp = Path(d)
            if name == "reference":
                from dsedge import reference

                ckpt = reference.checkpoint_path()
                size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
                for b in bits:
                    run("reference qwen2-tiny", None, b, size, tmp)
                continue
            cfg = dict(SYNTHETIC[name])
            layers = f"all {cfg['num_hidden_layers']} layers"
            if a.layers:
                layers = f"{a.layers} of {cfg['num_hidden_layers']} layers"
                cfg["num_hidden_layers"] = a.layers
            t = time.perf_counter()
            # generated in a child process: a forked build inherits its parent's RSS high-water
            # mark (ru_maxrss survives fork + exec), so the parent must stay small
            folder = tmp / f"synthetic-r1-distill-qwen-{name}"
            subprocess.run([sys.executable, __file__, "--generate", json.dumps(cfg), "--out", str(folder)], check=True)
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
            print(f"\nsynthetic R1-Distill-Qwen-{name.upper()} ({layers}, random BF16, {size / 1e9:.2f} GB) "
                  f"generated in {time.perf_counter() - t:.0f} s", flush=True)
            for b in bits:
                run(f"synthetic {name.upper()}", str(tmp / f"synthetic-r1-distill-qwen-{name}"), b, size, tmp)


if __name__ == "__main__":
    main()
