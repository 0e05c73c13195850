"""GPTQModel backend: a second implementation of GPTQ and AWQ, to compare two libraries on the
same method.

GPTQModel quantizes a model it loads itself from a folder (`GPTQModel.load(path, QuantizeConfig)`),
so the FP32 model is saved to a temporary folder, quantized there with the calibration token ids,
and saved in GPTQModel's own checkpoint format (GPTQ v1 / AWQ GEMM). That checkpoint is then read
back by dsedge's importer (dsedge.load.prequant) — the same code, checked against GPTQModel's own
dequantization in tests/load/test_prequant.py, that imports GPTQ / AWQ checkpoints people
download — so nothing is re-quantized and the codes are exactly the library's. Peak memory: the
FP32 model twice (ours and GPTQModel's copy) plus its calibration state; fine for what CPU
calibration is used for, and a big checkpoint is better quantized on a GPU anyway.

Differences from llm-compressor, passed explicitly or refused (see dsedge.quantize.calibrated):
- GPTQ: GPTQModel's defaults are damp_percent 0.05 and act_group_aware on; dsedge passes the
  config's damping (0.01, the paper's) and act_group_aware off. Its block size is fixed at 128.
  desc_act (act-order) stores a g_idx: the importer turns it into an input-channel permutation
  (QuantizedWeight.perm) and the exporter gathers the activation's channels (a Gather before
  the MatMul); static_groups keeps the groups in channel order (no permutation).
- AWQ: GPTQModel's AWQ grid has 20 points, fixed, and always runs AutoAWQ's clipping search.
  On CPU it needs its torch kernel (BACKEND.AWQ_TORCH): the default AWQ kernel needs CUDA.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import torch

from ...errors import ConfigError, DsedgeError

# GPTQModel sizes a worker pool from the CPU count and fails on machines with <= 3 cores
# ("Virtual pool ... requests 2 workers"); 2 workers work there. Set before gptqmodel is imported.
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")



def _import():
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        import gptqmodel  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"--backend gptqmodel needs the GPTQModel library ({e})",
                          'pip install "dsedge[gptqmodel]" (GPTQModel 7.6.0; install torch==2.13.0 first)') from None
    finally:
        # importing GPTQModel configures the root logger (INFO, a stderr handler), which would
        # print every library's INFO records (onnx-ir's passes...) through dsedge's output
        root.setLevel(level)
        root.handlers[:] = handlers
    return gptqmodel


@contextlib.contextmanager
def _library_log():
    """GPTQModel prints banners and per-module tables to stdout (its LogBar), which would tear
    dsedge's progress display: captured, and shown (its tail) only when the library fails."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    except DsedgeError:
        raise
    except Exception as e:
        tail = "\n".join(buf.getvalue().splitlines()[-20:])
        raise RuntimeError(f"GPTQModel failed: {e}\n--- last lines of its log ---\n{tail}") from e


def _calib_rows(calib) -> list[dict]:
    ids = calib.input_ids.long()
    return [{"input_ids": r.tolist(), "attention_mask": [1] * len(r)} for r in ids]


def _quantize(config, model, names: list[str], qcfg, calib, open_checkpoint, backend=None, dtype=torch.float32,
              keep: Path | None = None):
    """Quantize `model` with GPTQModel in a temporary folder; read its checkpoint back with
    dsedge's importer (validated like any downloaded one) -> QuantResult. Float parameters
    GPTQModel changed (AWQ-scaled norms and biases) go into `tensors`; GPTQModel computes in
    `dtype`, so a tensor counts as changed when it differs from the original rounded to `dtype`.
    keep: a folder to save GPTQModel's checkpoint in (for inspection); by default it is temporary.
    open_checkpoint: dsedge.load.open_checkpoint (passed in: quantize/ does not import load/)."""
    gptqmodel = _import()
    from ..result import QuantResult

    if calib.tokenizer is None:  # GPTQModel.load reads a tokenizer from the model's folder
        raise ConfigError("--backend gptqmodel needs the tokenizer the calibration ids were made with",
                          "build CalibData with tokenizer=... (dsedge.calib.resolve_calibration does)")
    with tempfile.TemporaryDirectory(prefix="dsedge-gptqmodel-") as tmp:
        src, out = Path(tmp) / "fp32", Path(keep) if keep is not None else Path(tmp) / "quantized"
        model.save_pretrained(src, safe_serialization=True)
        calib.tokenizer.save_pretrained(src)
        kw = {} if backend is None else {"backend": backend}
        qmodel = gptqmodel.GPTQModel.load(str(src), qcfg, device="cpu", dtype=dtype)
        qmodel.quantize(_calib_rows(calib), batch_size=1, **kw)
        qmodel.save(str(out))
        del qmodel
        ckpt = open_checkpoint(out)
        pq = ckpt.prequant
        if pq is None:
            raise RuntimeError(f"GPTQModel wrote no quantization_config into {out / 'config.json'}")
        ckpt.validate()
        missing = sorted(set(names) - set(pq.modules))
        if missing:
            raise RuntimeError(f"GPTQModel left {missing[0]} unquantized")
        weights = {n: pq.convert(n) for n in names}
        packed = {k for n in names for k in pq.packed_names(n)}
        changed = {}
        for k, p in model.named_parameters():
            if k in ckpt.index and k not in packed:
                t = ckpt.tensor(k).float()
                if not torch.equal(t, p.detach().to(dtype).float()):
                    changed[k] = t
    return QuantResult(config, weights, tensors=changed)


def gptq(config, model, names: list[str], calib, open_checkpoint, keep: Path | None = None):
    """GPTQ W4/W8 through GPTQModel (v1 checkpoint format; desc_act = act-order)."""
    with _library_log():
        return _gptq(config, model, names, calib, open_checkpoint, keep)


def awq(config, model, names: list[str], calib, open_checkpoint, keep: Path | None = None):
    """AWQ W4 (GEMM format) through GPTQModel, with its torch kernel (runs on CPU)."""
    with _library_log():
        return _awq(config, model, names, calib, open_checkpoint, keep)


def _gptq(config, model, names, calib, open_checkpoint, keep):
    _import()
    from gptqmodel import QuantizeConfig

    qcfg = QuantizeConfig(bits=config.bits, group_size=config.group_size, sym=config.symmetric,
                          desc_act=config.act_order, static_groups=config.static_groups,
                          true_sequential=config.true_sequential, damp_percent=config.damping,
                          act_group_aware=False, format="gptq", offload_to_disk=False)
    return _quantize(config, model, names, qcfg, calib, open_checkpoint, keep=keep)


def _awq(config, model, names, calib, open_checkpoint, keep):
    _import()
    from gptqmodel import BACKEND, QuantizeConfig
    from gptqmodel.quantization import FORMAT, METHOD

    qcfg = QuantizeConfig(bits=config.bits, group_size=config.group_size, sym=config.symmetric,
                          quant_method=METHOD.AWQ, format=FORMAT.GEMM, offload_to_disk=False)
    # its torch AWQ kernel (the one that runs on CPU) takes only float16 / bfloat16 models
    return _quantize(config, model, names, qcfg, calib, open_checkpoint, backend=BACKEND.AWQ_TORCH,
                     dtype=torch.bfloat16, keep=keep)
