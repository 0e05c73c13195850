"""dsedge's RTN / GPTQ / AWQ beside llm-compressor run directly: same checkpoint, same calibration
windows, same eval windows, 4-bit symmetric groups of 128 (the form TensorRT takes).

    python benchmarks/compare_llmcompressor.py                         # qwen2-tiny, reference recipe and eval
    python benchmarks/compare_llmcompressor.py --model DIR --calib self --methods rtn,gptq,awq
    python benchmarks/compare_llmcompressor.py --model DIR --eval my_text.txt
    python benchmarks/compare_llmcompressor.py --model src/dsedge/reference/checkpoints/qwen2-kjv \
        --calib reference-text --eval src/dsedge/reference/data/kjv/eval.txt --eval-separator eos \
        --eval-windows 64 --eval-window 256 --methods rtn,gptq,awq,awq:gptqmodel

Direct side, what an llm-compressor user writes: the checkpoint in FP32 with its weights rounded to
FP16 (dsedge's reference precision), `oneshot(model, dataset, recipe)` with llm-compressor's own
defaults: QuantizationModifier (RTN), GPTQModifier, or AWQModifier() then QuantizationModifier (its
documented AWQ recipe, default mappings), with `targets="Linear", scheme="W4A16", ignore=["lm_head"]`.
The fake-quantized model is then evaluated in PyTorch FP32.
dsedge side: `dsedge.build(..., quant=config_from_options(method=M, bits=4))` with the same recipe,
its report's figures: the ONNX graph (what ships) and the PyTorch model with the same weights.
Both sides are scored by dsedge.check.accuracy.evaluate on the same windows: perplexity change
against the FP16 model, and KL(FP16 || quantized) in nats per token.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
os.environ.setdefault("TQDM_DISABLE", "1")


def direct(method: str, path: Path, calib_ids, data, ref_fn):
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM

    from dsedge.check.accuracy import evaluate
    from dsedge.quantize.backends.llmcompressor import _cpu_pin_memory_workaround
    from dsedge.stages.check import torch_logits

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float16).float().eval()
    kw = dict(targets="Linear", scheme="W4A16", ignore=["lm_head"])
    recipe = {"rtn": lambda: QuantizationModifier(**kw), "gptq": lambda: GPTQModifier(**kw),
              "awq": lambda: [AWQModifier(), QuantizationModifier(**kw)]}[method]()
    if method == "rtn":
        oneshot(model=model, recipe=recipe)
    else:
        n, t = calib_ids.shape
        ds = Dataset.from_dict({"input_ids": calib_ids.tolist(), "attention_mask": [[1] * t] * n})
        with _cpu_pin_memory_workaround():   # llm-compressor 0.14's AWQ fails on a CPU-only host without it
            oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=n, max_seq_length=t)
    return evaluate({"fp16": ref_fn, "q": torch_logits(model)}, data, reference="fp16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a Hugging Face checkpoint folder (default: the qwen2-tiny reference)")
    ap.add_argument("--calib", default="reference", help="a dsedge calibration recipe or file")
    ap.add_argument("--eval", dest="eval_path", help="eval text (default: the reference corpus's eval split)")
    ap.add_argument("--eval-separator", default="newline", choices=("newline", "eos"),
                    help="join --eval lines with newline (continuous text) or eos (one document per line)")
    ap.add_argument("--eval-windows", type=int, default=32, help="eval windows (dsedge build --eval-windows)")
    ap.add_argument("--eval-window", type=int, default=128, help="tokens per eval window (--eval-window)")
    ap.add_argument("--methods", default="rtn,gptq,awq",
                    help="METHOD or METHOD:BACKEND for dsedge's side (awq:gptqmodel); the direct side runs METHOD")
    a = ap.parse_args()

    import torch

    import dsedge
    from dsedge import reference
    from dsedge.calib.recipes import resolve_calibration
    from dsedge.check.accuracy import load_eval
    from dsedge.load.checkpoint import open_checkpoint
    from dsedge.stages.check import torch_logits
    from dsedge.stages.quantize import round_to_fp16

    path = Path(a.model) if a.model else reference.checkpoint_path("qwen2-tiny")
    ck = open_checkpoint(path)
    tok = ck.tokenizer()
    fp16 = lambda: round_to_fp16(ck.load_model(torch.float32))
    win = dict(window=a.eval_window, max_windows=a.eval_windows)
    data = (load_eval(tok, Path(a.eval_path), separator=a.eval_separator, **win) if a.eval_path else
            load_eval(tok, reference.eval_text_path(), separator="eos", **win))
    calib = resolve_calibration(a.calib, tok, model=fp16)
    ref_fn = torch_logits(fp16())
    print(f"{ck.name}: calibration {calib.source} {tuple(calib.input_ids.shape)}, eval {data.source} "
          f"{data.windows.shape}", flush=True)
    rows, direct_runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in a.methods.split(","):
            m, _, backend = spec.partition(":")
            q = dsedge.config_from_options(method=m, bits=4, backend=backend or None)
            res = dsedge.build(path, quant=q, calib_spec=a.calib, eval_path=a.eval_path,
                               eval_separator=a.eval_separator, eval_windows=a.eval_windows,
                               eval_window=a.eval_window, output=Path(tmp) / q.label(), latency=False)
            r = res.report
            ref_ppl = r["fp16_reference"]["perplexity"]
            if m not in direct_runs:
                direct_runs[m] = direct(m, path, calib.input_ids, data, ref_fn)
            d = direct_runs[m]
            lc_ppl = 100 * (d["q"].perplexity / d["fp16"].perplexity - 1)
            rows.append((q.label(), r["ppl_change_pct"], r["onnx"]["kl"], r["pytorch"]["kl"], lc_ppl, d["q"].kl))
            if abs(d["fp16"].perplexity - ref_ppl) > 1e-3 * ref_ppl:
                print(f"  note: the FP16 perplexities differ ({d['fp16'].perplexity:.4f} vs {ref_ppl:.4f})")
    print(f"\n{'method':14} {'dsedge ONNX dPPL%':>18} {'KL':>10} {'PyTorch KL':>11} {'llm-compressor dPPL%':>21} "
          f"{'KL':>10} {'KL ratio':>9}")
    for m, dp, dk, pk, lp, lk in rows:
        print(f"{m:14} {dp:>18.3f} {dk:>10.3g} {pk:>11.3g} {lp:>21.3f} {lk:>10.3g} {dk / lk:>9.2f}")
    print("\nKL ratio: dsedge's ONNX KL / llm-compressor's direct KL (below 1: dsedge loses less)")


if __name__ == "__main__":
    sys.exit(main())
