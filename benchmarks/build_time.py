"""Per-stage wall time and peak RSS of `dsedge build`, on the reference checkpoint and on random-weight
checkpoints with the real configuration of any published DeepSeek checkpoint (the names of
src/dsedge/archs/configs/*.json), against the host planner's prediction.

    python benchmarks/build_time.py                                  # reference + R1-Distill-Qwen-1.5B, --bits 4
    python benchmarks/build_time.py --models r1-distill-qwen-7b,r1-distill-qwen-14b --bits 4,8
    python benchmarks/build_time.py --models deepseek-v2-lite --layers 2 --experts 16   # a cut (the output says so)
    python benchmarks/build_time.py --models all --layers 2 --vocab 8192 --bits 16,8,4   # every configuration, cut

Checkpoints are written by dsedge.reference.synthetic (random BF16 weights with the published
names and shapes, 2 GiB shards + index, one shard in memory at a time) and deleted afterwards.
Generation and each build run in fresh subprocesses (a forked child inherits its parent's RSS
high-water mark), each build through the same `dsedge.build` the CLI calls, with --no-cache and no
host latency, so its peak RSS is its own. ru_maxrss is a high-water mark: "peak RSS" after a stage
is the peak reached by the end of it. "planner" is the host plan's prediction for the scope the
build chose (report.json host_plan), and the ratio is measured / predicted.

This is also the real-shapes suite: the closing table has one row per configuration and width,
and the script exits 1 unless every build passed (a build exits 0 only when its ONNX matches
PyTorch within tolerance), greedy decoding agreed, the static TensorRT check passed and the
planner's peak was within 15 % of the measured one.
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

DEFAULT_MODELS = "reference,r1-distill-qwen-1.5b"
PLANNER_WITHIN = 0.15
ROWS: list[dict] = []


def _child(model: str | None, bits: int, out: str, check: str = "auto") -> None:
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
                       latency=False, use_cache=False, check_scope=check)
    r = res.report
    hp = r["host_plan"]
    predicted = hp["full_check_gib"] if hp["check_scope"] == "full" else max(hp["stream_peak_gib"], hp["truncated_check_gib"])
    print(json.dumps({"stages": marks, "ppl_change_pct": r["ppl_change_pct"], "size_mb": r["size_mb"],
                      "scope": hp["check_scope"], "fidelity": r["export_fidelity"]["max_abs_diff"],
                      "predicted_gib": predicted, "greedy_agrees": r["greedy_generation"]["agrees"],
                      "tensorrt_ok": r["tensorrt_compat"]["ok"], "fallbacks": len(r["quantization"]["layer_fallbacks"])}))


def run(label: str, model: str | None, bits: int, ckpt_bytes: int, tmp: Path, check: str = "auto") -> dict | None:
    out = tmp / f"art-{bits}"
    cmd = [sys.executable, __file__, "--child", model or "", "--bits", str(bits), "--out", str(out), "--check", check]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if r.returncode:
        print(f"{label} --bits {bits}: FAILED (exit {r.returncode})\n{r.stderr[-3000:]}", flush=True)
        ROWS.append({"model": label, "bits": bits, "ok": False, "why": f"build exit {r.returncode}"})
        return None
    res = json.loads(r.stdout.strip().splitlines()[-1])
    peak = max(m["peak_rss_mb"] for m in res["stages"].values())
    ratio = peak / 1024 / res["predicted_gib"]
    why = [w for w, bad in (("greedy disagrees", not res["greedy_agrees"]), ("TensorRT check fails", not res["tensorrt_ok"]),
                            (f"planner off by {ratio - 1:+.0%}", abs(ratio - 1) > PLANNER_WITHIN)) if bad]
    ROWS.append({"model": label, "bits": bits, "ok": not why, "why": ", ".join(why), "peak_gib": peak / 1024,
                 "predicted_gib": res["predicted_gib"], "ratio": ratio, "fidelity": res["fidelity"],
                 "seconds": sum(m["seconds"] for m in res["stages"].values())})
    ppl = "n/a (truncated check)" if res["ppl_change_pct"] is None else f"{res['ppl_change_pct']:+.2f} %"
    print(f"\n{label}, --bits {bits}: {time.perf_counter() - t:.0f} s with start-up, ONNX {res['size_mb'] / 1e3:.2f} GB, "
          f"check scope {res['scope']}, ppl change {ppl}; peak RSS {peak / 1024:.2f} GiB = "
          f"{peak * 2**20 / ckpt_bytes:.2f} x checkpoint ({ckpt_bytes / 1e9:.1f} GB); planner {res['predicted_gib']:.2f} GiB "
          f"(measured / predicted {peak / 1024 / res['predicted_gib']:.2f}); ONNX vs PyTorch {res['fidelity']:.3g}, "
          f"greedy {'agrees' if res['greedy_agrees'] else 'DISAGREES'}, TensorRT check "
          f"{'passes' if res['tensorrt_ok'] else 'FAILS'}, {res['fallbacks']} group fallbacks")
    print(f"  {'stage':<10}{'seconds':>9}{'peak RSS MiB':>14}{'/ ckpt':>8}")
    for name, m in res["stages"].items():
        print(f"  {name:<10}{m['seconds']:>9}{m['peak_rss_mb']:>14}{m['peak_rss_mb'] * 2**20 / ckpt_bytes:>8.2f}")
    sys.stdout.flush()
    return res


def _plan(name: str, folder: Path, bits: list[int]) -> None:
    """What the planner predicts for the build's scope, as _child reads it from report.json."""
    from dsedge.load import open_checkpoint
    from dsedge.plan.host import GiB, plan_host
    from dsedge.quantize import config_from_options

    ckpt = open_checkpoint(folder)
    for b in bits:
        p = plan_host(ckpt, quant=config_from_options(bits=b))
        peak = p.full_check_bytes if p.scope == "full" else max(p.stream_peak_bytes, p.truncated_check_bytes)
        print(f"  planner {name} --bits {b}: {peak / GiB:.2f} GiB (scope {p.scope})", flush=True)


def main() -> None:
    from dsedge.archs import CONFIGS, supported

    names = [n for sp in supported() for n in sp.real_shapes]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--generate", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma list of reference, all, or of: " + ", ".join(names))
    ap.add_argument("--bits", default="4", help="comma list of 4, 8, 16")
    ap.add_argument("--layers", type=int, default=None, help="keep only this many decoder layers")
    ap.add_argument("--experts", type=int, default=None, help="MoE: keep only this many routed experts")
    ap.add_argument("--vocab", type=int, default=None, help="keep only this many vocabulary rows")
    ap.add_argument("--workdir", default=None, help="where the checkpoints go (default: a temp folder)")
    ap.add_argument("--plan-only", action="store_true",
                    help="generate each configuration and print the host planner's prediction, without building")
    ap.add_argument("--check", default="auto", choices=("auto", "full", "truncated"),
                    help="the builds' --check scope (truncated: what a whole big model gets)")
    a = ap.parse_args()
    if a.child is not None:
        return _child(a.child or None, int(a.bits), a.out, a.check)
    if a.generate is not None:
        from dsedge.reference.synthetic import write_checkpoint

        write_checkpoint(a.generate, Path(a.out), a.layers, a.experts, a.vocab)
        return
    bits = [int(b) for b in a.bits.split(",")]
    models = names if a.models == "all" else a.models.split(",")
    print(f"host: {os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM")
    for name in models:
        with tempfile.TemporaryDirectory(dir=a.workdir) as d:
            tmp = Path(d)
            if name == "reference":
                from dsedge import reference

                ckpt = reference.checkpoint_path()
                size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
                for b in bits:
                    run("reference", None, b, size, tmp, a.check)
                continue
            pub = json.loads((CONFIGS / f"{name}.json").read_text())
            cut = [f"{a.layers} of {pub['num_hidden_layers']} layers" if a.layers else f"all {pub['num_hidden_layers']} layers"]
            if a.experts and pub.get("n_routed_experts"):
                cut.append(f"{a.experts} of {pub['n_routed_experts']} routed experts")
            if a.vocab:
                cut.append(f"{a.vocab} of {pub['vocab_size']} vocabulary rows")
            t = time.perf_counter()
            folder = tmp / name
            cmd = [sys.executable, __file__, "--generate", name, "--out", str(folder)]
            for flag, v in (("--layers", a.layers), ("--experts", a.experts), ("--vocab", a.vocab)):
                if v:
                    cmd += [flag, str(v)]
            subprocess.run(cmd, check=True)
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
            print(f"\n{name} ({', '.join(cut)}; random BF16, {size / 1e9:.2f} GB) generated in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
            if a.plan_only:
                _plan(name, folder, bits)
                continue
            for b in bits:
                run(name, str(folder), b, size, tmp, a.check)
    if a.plan_only:
        return
    print(f"\n{'configuration':<24}{'bits':>5}{'build s':>9}{'peak GiB':>10}{'planner':>9}{'ratio':>7}"
          f"{'ONNX-PT':>10}  result")
    for r in ROWS:
        if "ratio" in r:
            print(f"{r['model']:<24}{r['bits']:>5}{r['seconds']:>9.0f}{r['peak_gib']:>10.2f}{r['predicted_gib']:>9.2f}"
                  f"{r['ratio']:>7.2f}{r['fidelity']:>10.3g}  {'pass' if r['ok'] else 'FAIL: ' + r['why']}")
        else:
            print(f"{r['model']:<24}{r['bits']:>5}{'':>45}  FAIL: {r['why']}")
    failed = sum(not r["ok"] for r in ROWS)
    print(f"{len(ROWS) - failed} of {len(ROWS)} builds pass (ONNX within tolerance, greedy agrees, TensorRT "
          f"check, planner within {PLANNER_WITHIN:.0%})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
