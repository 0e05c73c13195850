"""--fit against uniform INT4 at equal weight bytes, through the real `dsedge build` pipeline.

    python benchmarks/fit.py                                   # qwen2-kjv (real text), its eval
    python benchmarks/fit.py --model PATH --calib reference --eval FILE

For each uniform RTN configuration (INT4 g128 / g32 with the embedding and lm_head FP16, the
default; INT4 g128 with lm_head INT4 too), the bytes it stores for the units a fit chooses for
(every decoder linear, lm_head, the embedding table) are counted (fit/units.py, the same count as
the artifact's), and `dsedge build --fit --fit-bits B` is run with B = those bytes as bits per
fitted weight, so both store the same bytes. Both artifacts are scored the same way: KL / top-1 /
perplexity of model.onnx against the FP16 reference on the eval windows (onnxruntime, accuracy
level 4). Prints one row per configuration and the KL ratio uniform / fit.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
KJV = ROOT / "src/dsedge/reference/checkpoints/qwen2-kjv"


def unit_bits(ckpt, quant) -> float:
    """Stored bits per weight of the fit's units under a uniform config."""
    from dsedge.fit.units import FP16, checkpoint_units, scheme_bytes

    shape = lambda n: tuple(ckpt.index[f"{n}.weight"].shape)
    units = checkpoint_units(ckpt.spec, ckpt.n_layers, shape, tied=f"{ckpt.spec.head}.weight" not in ckpt.index)
    total = params = 0
    for u in units:
        quantized = u.part not in ("embeddings", "lm_head") or (u.part == "lm_head" and quant.quantize_lm_head)
        s = quant.scheme_of(u.name, u.in_features) if quantized else FP16
        total += scheme_bytes(u.out_features, u.in_features, s)
        params += u.params
    return 8 * total / params


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(KJV))
    ap.add_argument("--calib", default="reference-text")
    ap.add_argument("--eval", default=str(ROOT / "src/dsedge/reference/data/kjv/eval.txt"))
    ap.add_argument("--eval-separator", default="eos")
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--eval-window", type=int, default=128)
    a = ap.parse_args()

    import dsedge
    from dsedge.load.checkpoint import open_checkpoint
    from dsedge.quantize import Int4WeightOnlyConfig, MixedPrecisionConfig

    ckpt = open_checkpoint(Path(a.model))
    uniform = [("INT4 g128, embedding + lm_head FP16", Int4WeightOnlyConfig()),
               ("INT4 g32, embedding + lm_head FP16", Int4WeightOnlyConfig(group_size=32)),
               ("INT4 g128, lm_head INT4, embedding FP16", Int4WeightOnlyConfig(quantize_lm_head=True))]
    common = dict(target="orin", calib_spec=a.calib, eval_path=a.eval, eval_separator=a.eval_separator,
                  eval_windows=a.eval_windows, eval_window=a.eval_window, latency=False, overwrite=True)
    fig = lambda r: (r["onnx"]["kl"], r["onnx"]["top1_agreement"], r["ppl_change_pct"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, q) in enumerate(uniform):
            bits = math.floor(unit_bits(ckpt, q) * 1e4) / 1e4     # the fit may store at most what the uniform does
            u = dsedge.build(a.model, quant=q, output=Path(tmp) / f"u{i}", **common).report
            f = dsedge.build(a.model, quant=MixedPrecisionConfig(max_bits=bits), output=Path(tmp) / f"f{i}",
                             **common).report
            rows.append((name, bits, fig(u), f["fit"], fig(f)))
            print(f"done: {name}", file=sys.stderr, flush=True)
    print(f"model {ckpt.name}; eval {a.eval_windows} x {a.eval_window} tokens of {a.eval}; calibration {a.calib}")
    print("| uniform | bits / fitted weight | uniform KL / top-1 / ΔPPL | fit mix | fit bits | fit KL / top-1 / ΔPPL "
          "| fit predicted KL | KL uniform / fit |")
    print("|---|---|---|---|---|---|---|---|")
    for name, bits, (ukl, ut1, uppl), fit, (fkl, ft1, fppl) in rows:
        c = fit["counts"]
        mix = " + ".join(f"{c[k]} {k.upper()}" for k in ("int4", "int8", "fp16") if c.get(k))
        print(f"| {name} | {bits:.3f} | {ukl:.3g} / {100 * ut1:.2f} % / {uppl:+.3f} % | {mix} | "
              f"{fit['bits_per_weight']:.3f} | {fkl:.3g} / {100 * ft1:.2f} % / {fppl:+.3f} % | "
              f"{fit['predicted_kl']:.3g} | {ukl / fkl:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
