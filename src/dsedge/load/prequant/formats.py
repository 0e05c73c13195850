"""The pre-quantized formats dsedge imports, as data: name -> detector, config parser, the tensors
each quantized linear stores (with their shapes), and the converter to QuantizedWeight.

A config that names a known library but a layout dsedge cannot represent (other bit widths,
kernel-specific layouts, mixed schemes, sparsity, rotations) is refused with a CheckpointError
naming the field and the fix; a config of an unknown library lists the supported formats.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...errors import CheckpointError
from . import unpack


@dataclass
class Scheme:
    """What the quantization_config says, normalised."""
    format: str
    bits: int
    group_size: int                  # -1: per output channel
    symmetric: bool
    zeros: str = "v2"                # GPTQ: "v1" stores zero - 1, "v2" the zero point itself
    act_order: bool = False          # GPTQ desc_act / compressed-tensors actorder "group": g_idx may permute
    activations: dict | None = None  # what the library did to activations (W8A8)
    notes: list[str] = field(default_factory=list)
    library: str = ""


@dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[dict], bool]
    parse: Callable[[dict], Scheme]
    marker: str                                      # tensor suffix that marks a quantized linear
    tensors: Callable[[int, int, Scheme], dict]      # suffix -> (shape, dtypes, required)
    convert: Callable                                # (read, module, N, K, scheme) -> QuantizedWeight
    perm: Callable | None = None                     # (read, module, K, scheme) -> perm or None


def _fail(problem: str, fix: str):
    raise CheckpointError(problem, fix)


def _bits(value, where: str, allowed=(4, 8)) -> int:
    if value not in allowed:
        _fail(f"{where}: {value}-bit weights cannot be imported",
              f"dsedge exports {' / '.join(map(str, allowed))}-bit weights: use such a checkpoint, "
              "or quantize the original model with dsedge")
    return int(value)


def _group(value) -> int:
    return -1 if value in (None, -1, 0) else int(value)


def _groups(k: int, s: Scheme) -> int:
    return 1 if s.group_size == -1 else k // s.group_size


FLOAT = ("F16", "BF16", "F32")


# ---- GPTQ (AutoGPTQ / GPTQModel) -------------------------------------------------------------
_GPTQ_FORMATS = {"gptq": "v1", "gptq_v2": "v2"}


def _parse_gptq(q: dict) -> Scheme:
    fmt = q.get("checkpoint_format") or q.get("format") or "gptq"   # AutoGPTQ wrote no field: v1
    if q.get("is_marlin_format") or fmt not in _GPTQ_FORMATS:
        _fail(f"GPTQ checkpoint_format {'marlin' if q.get('is_marlin_format') else fmt!r} is a kernel layout "
              "dsedge cannot read", f"use a checkpoint saved in format {' or '.join(_GPTQ_FORMATS)}")
    if q.get("pack_dtype", "int32") != "int32":
        _fail(f"GPTQ pack_dtype {q['pack_dtype']!r} is not supported", "use a checkpoint packed in int32 (the default)")
    if q.get("dynamic"):
        _fail("GPTQ 'dynamic' per-module overrides (mixed bits / group sizes) are not supported",
              "use a checkpoint quantized with one setting for every layer")
    bits = _bits(q.get("bits"), "GPTQ bits")
    desc = bool(q.get("desc_act", False))
    notes = ["act-order (desc_act): input channels are gathered into group order in the graph"] if desc else []
    return Scheme("gptq", bits, _group(q.get("group_size")), bool(q.get("sym", True)), _GPTQ_FORMATS[fmt], desc,
                  notes=notes, library=(q.get("meta") or {}).get("quantizer", ["AutoGPTQ/GPTQModel"])[0])


def _gptq_tensors(n: int, k: int, s: Scheme) -> dict:
    g, per = _groups(k, s), 32 // s.bits
    return {"qweight": ((k // per, n), ("I32",), True), "qzeros": ((g, n // per), ("I32",), True),
            "scales": ((g, n), FLOAT, True), "g_idx": ((k,), ("I32", "I64"), False)}


# ---- AWQ GEMM (AutoAWQ / GPTQModel) ----------------------------------------------------------
def _parse_awq(q: dict) -> Scheme:
    version = str(q.get("version") or q.get("format") or "gemm").lower()
    if version != "gemm":
        _fail(f"AWQ version {version!r} is a kernel layout dsedge cannot read",
              "use an AWQ checkpoint saved with version 'gemm' (AutoAWQ's default)")
    bits = _bits(q.get("bits", q.get("w_bit")), "AWQ bits", (4,))
    group = _group(q.get("group_size", q.get("q_group_size")))
    # zero_point false (GPTQModel's sym=True): qzeros are still stored, all 2^(b-1); checked when converted
    return Scheme("awq-gemm", bits, group, q.get("zero_point") is False, notes=["AWQ's scaling is folded into the stored weights"],
                  library="AutoAWQ/GPTQModel")


def _awq_tensors(n: int, k: int, s: Scheme) -> dict:
    g = _groups(k, s)
    return {"qweight": ((k, n // 8), ("I32",), True), "qzeros": ((g, n // 8), ("I32",), True),
            "scales": ((g, n), FLOAT, True)}


# ---- compressed-tensors (llm-compressor) -----------------------------------------------------
CT_FORMATS = ("pack-quantized", "int-quantized")


def _parse_ct(q: dict) -> Scheme:
    groups = q.get("config_groups") or {}
    fmts = {g.get("format") for g in groups.values()} - {None} or {q.get("format")}
    if len(fmts) != 1 or next(iter(fmts)) not in CT_FORMATS:
        _fail(f"compressed-tensors format {q.get('format')!r} (groups: {sorted(map(str, fmts))}) is not supported",
              f"dsedge imports compressed-tensors formats {', '.join(CT_FORMATS)} with one scheme for every layer")
    fmt = fmts.pop()
    for key in ("sparsity_config", "transform_config", "kv_cache_scheme"):
        if q.get(key):
            _fail(f"compressed-tensors {key} is set: sparse, rotated or KV-cache-quantized checkpoints are not supported",
                  "use a checkpoint with weight quantization only")
    if q.get("quantization_status", "compressed") != "compressed":
        _fail(f"compressed-tensors quantization_status is {q.get('quantization_status')!r}",
              "save the checkpoint compressed (save_compressed=True)")
    weights = [g.get("weights") or {} for g in groups.values()]
    if not weights or any(w != weights[0] for w in weights):
        _fail("compressed-tensors config_groups use different weight schemes", "use one weight scheme for every layer")
    w = weights[0]
    if w.get("type", "int") != "int" or w.get("dynamic"):
        _fail(f"compressed-tensors weights of type {w.get('type')!r} (dynamic: {w.get('dynamic')}) are not supported",
              "use integer weights with static scales (W4A16 / W8A8)")
    strategy = w.get("strategy")
    if strategy not in ("group", "channel"):
        _fail(f"compressed-tensors weight strategy {strategy!r} is not supported", "use group or channel scales")
    bits = _bits(w.get("num_bits"), "compressed-tensors num_bits", (4, 8) if fmt == "pack-quantized" else (8,))
    group = int(w["group_size"]) if strategy == "group" else -1
    scheme = Scheme(f"compressed-tensors/{fmt}", bits, group, bool(w.get("symmetric", True)),
                    act_order=w.get("actorder") == "group", library=f"compressed-tensors {q.get('version', '')}".strip())
    acts = [g.get("input_activations") for g in groups.values() if g.get("input_activations")]
    if acts:
        a = acts[0]
        static = not a.get("dynamic", False)
        scheme.activations = {"bits": a.get("num_bits"), "strategy": a.get("strategy"), "dynamic": not static,
                              "symmetric": a.get("symmetric", True)}
        if static and a.get("strategy") == "tensor" and a.get("symmetric", True):
            scheme.notes.append("static per-tensor INT8 activation scales (input_scale) are imported as act_scales")
        else:
            scheme.notes.append(
                f"activations were quantized {'dynamically' if not static else 'statically'} per "
                f"{a.get('strategy')} by the library; TensorRT's explicit quantization has no such scale, so dsedge "
                "exports these weights as INT8 weight-only (activations stay float)")
    return scheme


def _ct_pack_tensors(n: int, k: int, s: Scheme) -> dict:
    g, per = _groups(k, s), 32 // s.bits
    out = {"weight_packed": ((n, -(-k // per)), ("I32",), True), "weight_scale": ((n, g), FLOAT, True),
           "weight_shape": ((2,), ("I32", "I64"), False), "weight_g_idx": ((k,), ("I32", "I64"), False)}
    if not s.symmetric:
        out["weight_zero_point"] = ((-(-n // per), g), ("I32",), True)
    return out


def _ct_int_tensors(n: int, k: int, s: Scheme) -> dict:
    g = _groups(k, s)
    out = {"weight": ((n, k), ("I8",), True), "weight_scale": ((n, g), FLOAT, True),
           "input_scale": (None, FLOAT, False)}
    if not s.symmetric:
        out["weight_zero_point"] = ((n, g), ("I8",), True)
    return out


def _ct(fmt: str) -> Callable[[dict], bool]:
    return lambda q: q.get("quant_method") == "compressed-tensors" and _parse_ct_format(q) == fmt


def _parse_ct_format(q: dict) -> str | None:
    groups = q.get("config_groups") or {}
    fmts = {g.get("format") for g in groups.values()} - {None}
    return next(iter(fmts)) if len(fmts) == 1 else q.get("format")


FORMATS: dict[str, Format] = {
    "gptq": Format("gptq", lambda q: q.get("quant_method") == "gptq", _parse_gptq, "qweight", _gptq_tensors,
                   unpack.gptq, unpack.gptq_perm),
    "awq-gemm": Format("awq-gemm", lambda q: q.get("quant_method") == "awq", _parse_awq, "qweight", _awq_tensors,
                       unpack.awq_gemm),
    "compressed-tensors/pack-quantized": Format(
        "compressed-tensors/pack-quantized", _ct("pack-quantized"), _parse_ct, "weight_packed", _ct_pack_tensors,
        unpack.ct_pack_quantized, unpack.ct_perm),
    "compressed-tensors/int-quantized": Format(
        "compressed-tensors/int-quantized", _ct("int-quantized"), _parse_ct, "weight_scale", _ct_int_tensors,
        unpack.ct_int_quantized, unpack.ct_perm),
}
SUPPORTED = ("gptq (AutoGPTQ / GPTQModel, checkpoint_format gptq or gptq_v2, 4 or 8 bits)",
             "awq (version gemm, 4 bits)",
             "compressed-tensors (format pack-quantized or int-quantized)")


def detect(qcfg: dict) -> tuple[Format, Scheme]:
    """quantization_config -> (format, scheme); CheckpointError for anything else."""
    if not isinstance(qcfg, dict):
        _fail("config.json's quantization_config is not an object", "restore config.json from the original checkpoint")
    for fmt in FORMATS.values():
        if fmt.detect(qcfg):
            return fmt, fmt.parse(qcfg)
    method = qcfg.get("quant_method", "?")
    if method == "compressed-tensors":
        _parse_ct(qcfg)  # raises with the format named
    layout = qcfg.get("format", qcfg.get("version"))
    _fail(f"quantization_config quant_method {method!r}{f' (format {layout!r})' if layout else ''} is not supported", "dsedge imports: " + "; ".join(SUPPORTED) +
          ". Otherwise pass the original FP16/BF16 checkpoint and quantize it with dsedge")
