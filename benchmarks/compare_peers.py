"""dsedge against onnxruntime-genai's model builder on the same checkpoint: conversion (wall, CPU,
peak RSS) and host decode (ms/token, peak RSS), A/B interleaved, medians, ratios dsedge / peer.

    pip install onnxruntime-genai                      # the peer (not a dsedge dependency)
    python benchmarks/compare_peers.py --model DIR     # any Qwen2 / Llama layout HF folder
    python benchmarks/compare_peers.py --config r1-distill-qwen-1.5b --layers 8 --vocab 32768

Each conversion runs in its own process under `/usr/bin/time -f "%e %U %S %M"` (wall s, user s,
system s, max RSS KB): `dsedge build --bits 4 --no-cache` (default checks, and again with
`--check quick`; the export stage's seconds are read from report.json) against `python -m onnxruntime_genai.models.builder -p
int4 -e cpu`. Decode: a prompt of --prompt tokens, then --tokens greedy tokens, one thread, each
side in its own process (its peak RSS is its own), at onnxruntime's MatMulNBits accuracy level 1
(FP32 activations) and 4 (INT8 activations), the peer's model rebuilt for level 1
(`--extra_options accuracy_level=1`): dsedge's host runner (what `dsedge bench` and `dsedge run`
run: the host graph of dsedge/export/host.py, written into the stage cache beforehand so that its
one-off writing is not in the decode process's figures) and onnxruntime-genai's Generator on its
own model. The peer quantizes its lm_head to INT4 and uses blocks of 32; dsedge keeps the head in
FP16 unless built with --quantize-lm-head (--head-too adds that build's decode rows).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], log: Path) -> dict:
    """Run cmd under /usr/bin/time; -> wall, cpu (user + sys) seconds and peak RSS GiB."""
    stats = log.with_suffix(".time")
    with open(log, "w") as out:
        r = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(stats), *cmd], stdout=out,
                           stderr=subprocess.STDOUT)
    if r.returncode not in (0, 1):     # dsedge exits 1 for a missed target budget, which is not a failure here
        sys.exit(f"{' '.join(cmd[:4])}... failed (exit {r.returncode}); see {log}")
    wall, user, sys_, kb = stats.read_text().split()[-4:]
    return {"wall": float(wall), "cpu": float(user) + float(sys_), "peak_gib": int(kb) / 2**20}


def decode_child(side: str, model: str, level: int, prompt: int, tokens: int) -> None:
    """In a fresh process: prefill `prompt` tokens, then `tokens` greedy steps; print ms/token."""

    import numpy as np

    ids = (np.arange(prompt, dtype=np.int64) * 7919 % 997 + 4).reshape(1, prompt)
    steps = []
    if side == "dsedge":
        from dsedge.deploy.host import open_on_host

        dec, _ = open_on_host(Path(model), "onnxruntime", level)
        logits, past = dec.run(ids)
        for _ in range(tokens):
            nxt = np.array([[int(logits.argmax())]], np.int64)
            t = time.perf_counter()
            logits, past = dec.run(nxt, past)
            steps.append(time.perf_counter() - t)
    else:
        import onnxruntime_genai as og

        params = og.GeneratorParams(m := og.Model(model))
        params.set_search_options(max_length=prompt + tokens + 1, do_sample=False)
        gen = og.Generator(m, params)
        gen.append_tokens(ids)
        gen.generate_next_token()
        for _ in range(tokens):
            t = time.perf_counter()
            gen.generate_next_token()
            steps.append(time.perf_counter() - t)
    # VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across fork + exec
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"ms_per_token": 1e3 * statistics.median(steps), "peak_gib": hwm / 2**20}))


def one_thread(genai_dir: Path) -> None:
    """onnxruntime-genai reads its threads from genai_config.json: one, as dsedge's side gets."""
    f = genai_dir / "genai_config.json"
    cfg = json.loads(f.read_text())
    cfg["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = 1
    f.write_text(json.dumps(cfg, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a Hugging Face checkpoint folder")
    ap.add_argument("--config", help="or a published configuration (src/dsedge/archs/configs), generated")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--reps", type=int, default=2, help="A/B pairs of conversions")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--head-too", action="store_true", help="also decode a dsedge --quantize-lm-head build")
    ap.add_argument("--decode-child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.decode_child:
        side, model, level = a.decode_child
        return decode_child(side, model, int(level), a.prompt, a.tokens)
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        sys.exit("onnxruntime-genai is not installed: pip install onnxruntime-genai")
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        tmp = Path(d)
        model = a.model
        if model is None:
            from dsedge.reference.synthetic import write_checkpoint

            model = str(write_checkpoint(a.config, tmp / a.config, a.layers, None, a.vocab))
        size = sum(f.stat().st_size for f in Path(model).glob("*.safetensors"))
        print(f"checkpoint {model}: {size / 1e9:.2f} GB of safetensors")
        sides = ("dsedge", "quick", "peer")         # quick: dsedge build --check quick
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        export_s = []
        for i in range(a.reps):                     # interleaved, the order rotated each round
            for side in sides[i % 3:] + sides[:i % 3]:
                out = tmp / f"{side}-{i}"
                cmd = ([sys.executable, "-m", "dsedge", "build", "--model", model, "--bits", "4", "--no-cache",
                        "--no-latency", "-o", str(out), *(("--check", "quick") if side == "quick" else ())]
                       if side != "peer" else
                       [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", model, "-o", str(out),
                        "-p", "int4", "-e", "cpu", "-c", str(tmp / "genai-cache")])
                runs[side].append(timed(cmd, tmp / f"{side}-{i}.log"))
                if side != "peer":
                    export_s.append(json.loads((out / "report.json").read_text())["stage_seconds"]["export"])
                if i < a.reps - 1 or side == "quick":
                    shutil.rmtree(out)
        med = {s: {k: statistics.median(r[k] for r in v) for k in ("wall", "cpu", "peak_gib")} for s, v in runs.items()}
        print(f"\nconversion, medians of {a.reps} (interleaved); ratios against the peer")
        print(f"{'':<24}{'dsedge':>9}{'ratio':>7}{'--check quick':>15}{'ratio':>7}{'peer':>9}")
        for k, label in (("wall", "wall s"), ("cpu", "CPU s"), ("peak_gib", "peak RSS GiB")):
            d, q, p = (med[s][k] for s in sides)
            print(f"{label:<24}{d:>9.1f}{d / p:>7.2f}{q:>15.1f}{q / p:>7.2f}{p:>9.1f}")
        e, p = statistics.median(export_s), med["peer"]["wall"]
        print(f"{'dsedge export stage s':<24}{e:>9.1f}{e / p:>7.2f}{'':>15}{'':>7}{p:>9.1f}")
        last = a.reps - 1
        models = {"dsedge": tmp / f"dsedge-{last}", "peer4": tmp / f"peer-{last}", "peer1": tmp / "peer-level1"}
        timed([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", model, "-o", str(models["peer1"]),
               "-p", "int4", "-e", "cpu", "-c", str(tmp / "genai-cache"), "--extra_options", "accuracy_level=1"],
              tmp / "peer-level1.log")
        if a.head_too:
            models["dsedge+head"] = tmp / "dsedge-head"
            timed([sys.executable, "-m", "dsedge", "build", "--model", model, "--bits", "4", "--no-cache", "--no-latency",
                   "--check", "truncated", "--quantize-lm-head", "-o", str(models["dsedge+head"])], tmp / "dsedge-head.log")
        for key in ("peer4", "peer1"):
            one_thread(models[key])
        env = {**os.environ, "DSEDGE_CACHE_DIR": str(tmp / "cache"), "DSEDGE_THREADS": "1"}
        for key in [k for k in models if k.startswith("dsedge")]:   # the host graph into the cache, once
            subprocess.run([sys.executable, "-c", "import sys; from dsedge.host_graph import host_graph; "
                            "host_graph(sys.argv[1])", str(models[key])], env=env, check=True)
        pairs = [(f"{d} level {lv}", d, lv, f"peer{lv}") for lv in (1, 4) for d in models if d.startswith("dsedge")]
        print(f"\nhost decode, 1 thread, {a.prompt}-token prompt + {a.tokens} greedy tokens, medians of 2 (A/B)")
        print(f"{'':<26}{'ms/token':>10}{'peer':>8}{'ratio':>7}{'tok/s ratio':>12}{'peak GiB':>10}{'peer':>7}{'ratio':>7}")
        for label, d, lv, p in pairs:
            dec = {"dsedge": [], "peer": []}
            for i in range(2):
                for side in ("dsedge", "peer") if i % 2 == 0 else ("peer", "dsedge"):
                    folder = models[d] if side == "dsedge" else models[p]
                    r = subprocess.run([sys.executable, __file__, "--decode-child", side, str(folder), str(lv),
                                        "--prompt", str(a.prompt), "--tokens", str(a.tokens)],
                                       capture_output=True, text=True, env=env)
                    if r.returncode:
                        sys.exit(f"{side} decode failed:\n{r.stderr[-3000:]}")
                    dec[side].append(json.loads(r.stdout.strip().splitlines()[-1]))
            ms, pms, gb, pgb = [statistics.median(r[k] for r in dec[side]) for k in ("ms_per_token", "peak_gib")
                                for side in ("dsedge", "peer")]
            print(f"{label:<26}{ms:>10.2f}{pms:>8.2f}{ms / pms:>7.2f}{pms / ms:>12.2f}{gb:>10.2f}{pgb:>7.2f}{gb / pgb:>7.2f}")

if __name__ == "__main__":
    main()
