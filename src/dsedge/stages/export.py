"""The export stage of `dsedge build`: the ONNX graph with the KV cache as inputs and outputs
(reused from the stage cache when an identical build made it), plus the tokenizer and config
files the artifact carries and onnxruntime-genai's genai_config.json."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..cache import StageCache, cache_key
from ..load.checkpoint import CONFIG_FILES, TOKENIZER_FILES
from ..export import OPSET, ExportResult, export_onnx
from ..export.contract import DecoderContract
from ..export.genai import write_genai_config
from ..quantize.primitives import NUMERICS


@dataclass
class Exported:
    result: ExportResult
    key: str
    reused: bool                 # restored from the stage cache
    genai_note: str | None = None  # why the artifact has no genai_config.json (None: it has one)


def export_stage(job, q, dtype: str, staging: Path, cache: StageCache) -> Exported:
    """job: the load stage's Loaded; q: the quantize stage's Quantized; dtype: "float16" | "float32"."""
    import torch

    ckpt, quant, act_dtype = job.ckpt, job.quant, getattr(torch, dtype)
    key = cache_key("export", ckpt.sha256(), quant.to_dict(), dtype, OPSET, __version__, NUMERICS,
                    q.calib.describe() if q.calib else None, _scales_digest(q.kv_scales))
    entry = cache.get("export", key, verify=False)        # restore() verifies every byte it copies
    meta = cache.restore(entry, staging, "export") if entry else None
    props = onnx_metadata(job)
    if meta is not None:
        exp = ExportResult(path=staging / "model.onnx", **meta)
        stamp_metadata(exp.path, props)     # the cached graph may come from a build for another target
    else:
        exp = export_onnx(ckpt.config, q.weights_of, q.qweights, q.result.spec, staging / "model.onnx", act_dtype,
                          act_scales=q.result.act_scales, cache=cache, metadata=props, kv_scales=q.kv_scales)
    for f in TOKENIZER_FILES + CONFIG_FILES:
        if (ckpt.path / f).exists():
            shutil.copy2(ckpt.path / f, staging / f)
    # after generation_config.json is there: it gives onnxruntime-genai the EOS / BOS ids
    genai_note = (write_genai_config(staging, ckpt.raw_config, DecoderContract.from_config(ckpt.config))
                  if q.kv_scales is None else
                  "no genai_config.json: onnxruntime-genai has no INT8 KV cache type (--kv-cache int8)")
    return Exported(exp, key, meta is not None, genai_note)


def _scales_digest(scales) -> str | None:
    if scales is None:
        return None
    import hashlib

    h = hashlib.sha256()
    for name in sorted(scales):
        h.update(name.encode() + scales[name].astype("<f4").tobytes())
    return h.hexdigest()


def cache_export(cache: StageCache, exported: Exported, staging: Path) -> None:
    """Store a fresh export. Called once the stage has ended: an interrupt Python deferred during
    the export (one that landed in a __del__) is raised at the stage boundary, before anything is
    cached."""
    if not exported.reused:
        cache.put("export", exported.key, sorted(staging.glob("model.onnx*")),
                  {k: v for k, v in exported.result.__dict__.items() if k != "path"})


def onnx_metadata(job) -> dict[str, str]:
    """model.onnx's metadata_props: what built it, as the manifest records it (strings only)."""
    quant = job.quant
    group = getattr(quant, "group_size", None)       # fp16 has none; -1 is per output channel
    return {"dsedge.version": __version__, "dsedge.method": quant.method, "dsedge.bits": "mixed" if getattr(quant, "fitted", False) else str(quant.bits),
            "dsedge.group_size": "" if group is None else str(group),
            "dsedge.quantization": json.dumps(quant.to_dict(), sort_keys=True, default=str),
            "dsedge.source_name": str(job.ckpt.name), "dsedge.source_sha256": job.ckpt.sha256(),
            "dsedge.kv_cache": job.kv_cache, "dsedge.target": job.target.name, "dsedge.tensorrt": str(job.target.tensorrt.version)}


def stamp_metadata(path: Path, props: dict[str, str]) -> None:
    """Set `props` in an ONNX file's metadata_props in place (the graph proto only: external
    weight data is neither read nor rewritten). A no-op when they are already there."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    have = {p.key: p.value for p in model.metadata_props}
    if all(have.get(k) == v for k, v in props.items()):
        return
    have.update(props)
    del model.metadata_props[:]
    for k, v in have.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
