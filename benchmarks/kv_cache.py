"""What the INT8 KV cache costs, beside its control, and beside llama.cpp's q8_0 cache.

    python benchmarks/kv_cache.py                                            # qwen2-tiny, reference eval
    python benchmarks/kv_cache.py --model src/dsedge/reference/checkpoints/qwen2-kjv \
        --calib reference-text --eval src/dsedge/reference/data/kjv/eval.txt --eval-separator eos
    python benchmarks/kv_cache.py ... --llama-cpp PATH/TO/llama.cpp             # + llama.cpp f16 vs q8_0 cache
                                                   # (pip install sentencepiece for its converter)

dsedge side: the checkpoint's INT4 RTN g128 weights exported twice, with an FP16 cache and with
`--kv-cache int8` (scales calibrated on --calib through the quantized model, as `dsedge build`
does), each decoded token by token through its cache in onnxruntime (check/kv_cache.py) and
scored against the same weights with an FP16 cache in PyTorch: the FP16-cache graph's figure is
the floor (FP16 activations only), the INT8 graph's the cache's cost. Short: the eval's first 8
windows of --eval-window tokens; long: the same text in windows of the model's positions.

llama.cpp side (optional; needs a llama.cpp checkout with `llama-perplexity` built and its
gguf-py): the FP16 checkpoint converted to GGUF (F16), `llama-perplexity --kl-divergence-base`
on the same text with an f16 cache, then `--kl-divergence` with `-ctk q8_0 -ctv q8_0 -fa on`
and `-ub 1` (one token per step, so every token reads the cache). llama.cpp scores its own
windows of the text (ppl from the second half of each chunk), so its KL is comparable in kind,
not token for token.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")


def dsedge_side(path: Path, calib_spec: str, eval_path: Path | None, separator: str, window: int) -> dict:
    import torch

    from dsedge import reference
    from dsedge.calib.recipes import resolve_calibration
    from dsedge.check import OnnxDecoder
    from dsedge.check.accuracy import load_eval
    from dsedge.check.kv_cache import kv_cache_figures
    from dsedge.export import export_onnx
    from dsedge.load.checkpoint import open_checkpoint
    from dsedge.quantize import Int4WeightOnlyConfig, WeightSource, apply_fake_quant, quantize_model
    from dsedge.quantize.kv_cache import calibrate
    from dsedge.stages.quantize import round_to_fp16

    ck = open_checkpoint(path)
    tok = ck.tokenizer()
    data = (load_eval(tok, eval_path, separator=separator, window=window) if eval_path else
            load_eval(tok, reference.eval_text_path(), separator="eos", window=window))
    source = WeightSource(lambda k: ck.tensor(k).half().float())
    qres = quantize_model(Int4WeightOnlyConfig(), source, ck.spec, ck.n_layers,
                          lambda n: ck.index[f"{n}.weight"].shape[1], arch_config=ck.raw_config)
    model = apply_fake_quant(round_to_fp16(ck.load_model(torch.float32)).eval(), qres.weights)
    calib = resolve_calibration(calib_spec, tok)
    scales = calibrate(model, calib.input_ids)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kv, s in (("fp16", None), ("int8", scales)):
            p = Path(tmp) / f"{kv}.onnx"
            export_onnx(ck.config, source.tensor, qres.weights, qres.spec, p, torch.float16, kv_scales=s)
            out[kv] = kv_cache_figures(OnnxDecoder(p), model, data, tok)
            print(f"  dsedge {kv} cache done", flush=True)
    out["calibration"] = f"{calib.source} {tuple(calib.input_ids.shape)}"
    return out


# llama.cpp's converter names the BPE pre-tokenizer from a hash of known models' encodings; the
# reference checkpoints are not among them, so an unknown hash is declared as --gguf-pre (the
# reference tokenizers use exactly their family's split regex: the text reference's is Qwen2's)
_CONVERT = """
import runpy, sys
llama_cpp, pre = sys.argv[1], sys.argv[2]
sys.argv = [llama_cpp + "/convert_hf_to_gguf.py", *sys.argv[3:]]
sys.path[:0] = [llama_cpp + "/gguf-py", llama_cpp]
from conversion import base
known = base.TextModel.get_vocab_base_pre
def get_pre(self, tokenizer):
    try:
        return known(self, tokenizer)
    except NotImplementedError:
        return pre
base.TextModel.get_vocab_base_pre = get_pre
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def llama_cpp_side(path: Path, llama_cpp: Path, text: Path, ctx: int, chunks: int, pre: str) -> dict:
    """KL of llama.cpp's q8_0 cache against its f16 cache, on the FP16 GGUF of `path`."""
    exe = next((p for p in (llama_cpp / "build" / "bin" / "llama-perplexity",) if p.is_file()), None)
    if exe is None:
        raise SystemExit(f"no {llama_cpp}/build/bin/llama-perplexity: build it with "
                         "cmake -B build && cmake --build build --target llama-perplexity")
    with tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / "model-f16.gguf"
        subprocess.run([sys.executable, "-c", _CONVERT, str(llama_cpp), pre, str(path), "--outtype", "f16",
                        "--outfile", str(gguf)], check=True, capture_output=True)
        base = Path(tmp) / "f16.kld"
        common = [str(exe), "-m", str(gguf), "-f", str(text), "-c", str(ctx), "-t", "2", "-ub", "1", "-b", str(ctx),
                  "--chunks", str(chunks),
                  "-fa", "on"]
        ref = subprocess.run([*common, "--kl-divergence-base", str(base)], check=True, capture_output=True, text=True)
        res = subprocess.run([*common, "--kl-divergence-base", str(base), "--kl-divergence", "-ctk", "q8_0",
                              "-ctv", "q8_0"], check=True, capture_output=True, text=True)
    grab = lambda rx, log: float(re.search(rx, log.stdout + log.stderr).group(1))
    # PPL(Q) against the f16 run's own final estimate (same chunks and scored positions)
    ppl_f16 = grab(r"Final estimate: PPL = ([\d.]+)", ref)
    return {"kl": grab(r"Mean\s+KLD:\s+([-\d.e]+)", res), "top1_agreement": grab(r"Same top p:\s+([\d.]+)", res) / 100,
            "ppl_change_pct": 100 * (grab(r"Mean PPL\(Q\)\s*:\s*([\d.]+)", res) / ppl_f16 - 1), "window_tokens": ctx}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a Hugging Face checkpoint folder (default: the qwen2-tiny reference)")
    ap.add_argument("--calib", default="reference", help="calibration recipe or file for the cache scales")
    ap.add_argument("--eval", dest="eval_path", help="eval text (default: the reference corpus's eval split)")
    ap.add_argument("--eval-separator", default="newline", choices=("newline", "eos"))
    ap.add_argument("--eval-window", type=int, default=128, help="short-context window (tokens)")
    ap.add_argument("--llama-cpp", type=Path, help="a llama.cpp checkout with llama-perplexity built")
    ap.add_argument("--gguf-pre", default="qwen2", help="GGUF pre-tokenizer name where llama.cpp does not know the "
                    "tokenizer's hash (the reference checkpoints)")
    a = ap.parse_args()

    from dsedge import reference

    path = Path(a.model) if a.model else reference.checkpoint_path("qwen2-tiny")
    eval_path = Path(a.eval_path) if a.eval_path else None
    d = dsedge_side(path, a.calib, eval_path, a.eval_separator, a.eval_window)
    print(f"\n{path.name}: INT4 RTN g128 weights; cache scales calibrated on {d['calibration']}")
    print(f"{'cache':22} {'context':>8} {'windows':>8} {'KL':>10} {'top-1':>8} {'dPPL %':>8}")
    for kv in ("fp16", "int8"):
        for ctx in ("short", "long"):
            f = d[kv].get(ctx)
            if f:
                print(f"{'dsedge ' + kv:22} {f['window_tokens']:>8} {f['windows']:>8} {f['kl']:>10.3g} "
                      f"{f['top1_agreement']:>8.4f} {f['ppl_change_pct']:>8.3f}")
    if a.llama_cpp:
        text = eval_path or reference.eval_text_path()
        for ctx in ("short", "long"):
            mine = d["int8"].get(ctx)
            if mine:
                f = llama_cpp_side(path, a.llama_cpp, text, mine["window_tokens"], mine["windows"], a.gguf_pre)
                print(f"{'llama.cpp q8_0':22} {mine['window_tokens']:>8} {mine['windows']:>8} {f['kl']:>10.3g} "
                      f"{f['top1_agreement']:>8.4f} {f['ppl_change_pct']:>8.3f}")
    print("\nKL, top-1 and dPPL of each cache against an FP16 cache on the same weights (dsedge: PyTorch FP32; "
          "llama.cpp: its own f16-cache run)")


if __name__ == "__main__":
    sys.exit(main())
