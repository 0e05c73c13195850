"""Per-stage wall time and peak RSS of `dsedge build`.

    python benchmarks/build_time.py                 # reference checkpoint + synthetic R1-Distill-Qwen-1.5B
    python benchmarks/build_time.py --layers 28     # the synthetic model with all its layers

The synthetic checkpoint has DeepSeek-R1-Distill-Qwen-1.5B's real dimensions (hidden 1536, 12 heads,
2 KV heads, intermediate 8960, vocab 151936, untied head) and random BF16 weights generated here;
by default only its first 2 of 28 layers, which the output states. Each build runs in a fresh
subprocess so peak RSS is its own; ru_maxrss is a high-water mark, so "peak RSS" after a stage is
the peak reached by the end of that stage.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

R1_DISTILL_QWEN_1_5B = dict(  # config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B
    architectures=["Qwen2ForCausalLM"], hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
    num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, max_position_embeddings=131072,
    rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, model_type="qwen2",
)


def make_synthetic(folder: Path, layers: int) -> Path:
    """Random BF16 weights with the real shapes, written tensor by tensor (no whole model in memory)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from dsedge import reference

    cfg = AutoConfig.for_model(**{**R1_DISTILL_QWEN_1_5B, "num_hidden_layers": layers})
    cfg.architectures = ["Qwen2ForCausalLM"]
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(cfg)
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for name, p in meta.state_dict().items():
        if p.dim() == 1:
            t = torch.ones(p.shape) if "norm" in name else torch.randn(p.shape, generator=gen) * 0.02
        else:
            t = torch.randn(p.shape, generator=gen) * (p.shape[-1] ** -0.5)
        tensors[name] = t.to(torch.bfloat16)
    folder.mkdir(parents=True)
    cfg.save_pretrained(folder)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(reference.checkpoint_path() / f, folder / f)
    return folder


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
        marks[name] = {"seconds": round(time.perf_counter() - t, 2),
                       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}

    res = dsedge.build(model, target="orin", quant=config_from_options(bits=bits), output=out, stage=stage)
    print(json.dumps({"stages": marks, "ppl_change_pct": res.report["ppl_change_pct"],
                      "size_mb": res.report["size_mb"]}))


def run(label: str, model: str | None, bits: int, tmp: Path) -> None:
    out = tmp / f"art-{label}-{bits}"
    cmd = [sys.executable, __file__, "--child", model or "", "--bits", str(bits), "--out", str(out)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        print(f"{label} w{bits}: FAILED\n{r.stderr[-2000:]}")
        return
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\n{label}, --bits {bits}: total {time.perf_counter() - t:.1f} s (incl. start-up), "
          f"artifact {res['size_mb']:.1f} MB, ppl change {res['ppl_change_pct']:+.2f} %")
    print(f"  {'stage':<10}{'seconds':>9}{'peak RSS MB':>13}")
    for name, m in res["stages"].items():
        print(f"  {name:<10}{m['seconds']:>9}{m['peak_rss_mb']:>13}")
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2, help="layers of the synthetic 1.5B model (real: 28)")
    a = ap.parse_args()
    if a.child is not None:
        return _child(a.child or None, a.bits, a.out)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run("reference qwen2-tiny", None, a.bits, tmp)
        synth = make_synthetic(tmp / "r1-distill-qwen-1.5b-synthetic", a.layers)
        size = sum(f.stat().st_size for f in synth.glob("*.safetensors")) / 1e6
        print(f"\nsynthetic R1-Distill-Qwen-1.5B dimensions, {a.layers} of 28 layers, random BF16 weights, {size:.0f} MB")
        run(f"synthetic-1.5B ({a.layers}/28 layers)", str(synth), a.bits, tmp)


if __name__ == "__main__":
    main()
