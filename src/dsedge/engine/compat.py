"""Check an exported ONNX graph against what the target's TensorRT takes, without TensorRT:
opset and IR version, operators and their attributes, data types, quantization (INT4 blocked
DequantizeLinear, INT8 / FP8 Q/DQ), and the dynamic shapes against the target's profiles.

    report = check_onnx("artifacts/x/model.onnx", find_target("orin"))
    report.ok, report.problems[0].node, report.to_dict()

The graph is read without its external data; only zero-point tensors (small) are read.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import onnx
from onnx import helper

from ..errors import TargetError
from . import graph as G
from .settings import profiles as make_profiles
from .support import (ACTIVATION_PRECISION, IO_ONLY_TYPES, MIN_CC, MIN_OPSET, OPS, QUANT, QUANTIZED_TYPES,
                      S_QDQ_IO, SCALE_TYPES, TENSOR_TYPES, UNSUPPORTED, parse_version, table_for, trt_version_row)


@dataclass(frozen=True)
class Problem:
    node: str        # node name, tensor name, or "graph"
    op: str          # operator type, or "" for graph-level problems
    reason: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.node} ({self.op})" if self.op else self.node
        return f"{where}: {self.reason}"


@dataclass
class CompatReport:
    target: str
    tensorrt: str
    opset: int
    ops: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "target": self.target, "tensorrt": self.tensorrt, "opset": self.opset,
                "ops": self.ops, "problems": [asdict(p) for p in self.problems], "notes": self.notes,
                "support_table": self.table}

    def summary(self) -> str:
        head = f"ONNX vs TensorRT {self.tensorrt} ({self.target}): "
        if self.ok:
            return head + f"compatible ({sum(self.ops.values())} nodes, {len(self.ops)} operator types)"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(f"  {p}" for p in self.problems)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _node_name(node, i: int) -> str:
    return node.name or f"{node.op_type}#{i}"


class _Checker:
    def __init__(self, model: onnx.ModelProto, base, target):
        self.m, self.base, self.t = model, base, target
        self.trt = parse_version(target.tensorrt.version)
        self.cc = tuple(int(x) for x in target.gpu.compute_capability.split("."))
        self.types = G.value_types(model)
        self.const = G.constants(model)
        self.inits = {i.name: i for g in G.graphs(model.graph) for i in g.initializer}
        self.opset = G.opset(model)
        self.consumers: dict[str, list] = {}
        for n in G.all_nodes(model.graph):   # If branches (MoE experts) included
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.needs: set[str] = set()     # Target.precisions entries the graph uses

    def fail(self, node: str, op: str, reason: str, source: str = ""):
        self.problems.append(Problem(node, op, reason, source))

    # -- graph level --------------------------------------------------------------------------
    def check_versions(self):
        row = trt_version_row(self.trt)
        if row is None:
            self.fail("graph", "", f"dsedge has no support table for TensorRT {self.t.tensorrt.version} "
                      "(its tables cover TensorRT 10.x)")
            return
        if not MIN_OPSET <= self.opset <= row.max_opset:
            self.fail("graph", "", f"ai.onnx opset {self.opset} is outside TensorRT {self.t.tensorrt.version}'s "
                      f"range {MIN_OPSET}..{row.max_opset}", row.source)
        if self.m.ir_version > row.max_ir_version:
            self.fail("graph", "", f"ONNX IR version {self.m.ir_version} is newer than TensorRT "
                      f"{self.t.tensorrt.version}'s parser reads ({row.max_ir_version})", row.source)

    def check_types(self):
        g = self.m.graph
        io = {v.name for v in [*g.input, *g.output]}
        for name, dtype in self.types.items():
            if dtype == "UNDEFINED":
                continue
            if dtype not in TENSOR_TYPES:
                self.fail(name, "", f"element type {dtype} does not exist in TensorRT",
                          "onnx-tensorrt docs/operators.md (supported ONNX data types)")
            elif dtype in IO_ONLY_TYPES and name not in io:
                self.fail(name, "", f"{dtype} is only supported as a network input or output")
            elif dtype == "DOUBLE":
                self.notes.append(f"{name}: DOUBLE is cast down to FLOAT by TensorRT")
            if dtype in MIN_CC and self.cc < MIN_CC[dtype][0]:
                need = ".".join(map(str, MIN_CC[dtype][0]))
                self.fail(name, "", f"{dtype} needs compute capability {need}, {self.t.name} has "
                          f"{self.t.gpu.compute_capability}", MIN_CC[dtype][1])
        for v in [*g.input, *g.output]:   # the activations' dtype: the cache's, or (INT8 cache) the logits'
            act = self.types.get(v.name)
            if (v.name.startswith("past_key_values.") or v.name == "logits") and act in ACTIVATION_PRECISION:
                self.needs.add(ACTIVATION_PRECISION[act])

    def check_quantized_io(self):
        """INT8 graph inputs are read by DequantizeLinear only, INT8 outputs written by
        QuantizeLinear, each with a constant scalar / 1-D scale (an INT8 KV cache)."""
        g = self.m.graph
        producer = {o: n for n in g.node for o in n.output}
        for v in g.input:
            if self.types.get(v.name) != "INT8":
                continue
            self.needs.add("int8")
            for c in self.consumers.get(v.name, []):
                if c.op_type != "DequantizeLinear" or c.input[0] != v.name:
                    self.fail(v.name, c.op_type, f"INT8 input {v.name!r} feeds {c.op_type}: TensorRT reads a quantized "
                              "input through DequantizeLinear only", S_QDQ_IO)
                else:
                    self._check_io_scale(c, v.name)
        for v in g.output:
            if self.types.get(v.name) != "INT8":
                continue
            n = producer.get(v.name)
            if n is None or n.op_type != "QuantizeLinear":
                self.fail(v.name, n.op_type if n else "", f"INT8 output {v.name!r} is not written by QuantizeLinear",
                          S_QDQ_IO)
            else:
                self._check_io_scale(n, v.name)

    def _check_io_scale(self, n, name):
        scale = n.input[1] if len(n.input) > 1 else ""
        init = self.inits.get(scale)
        if scale not in self.const or (init is not None and len(init.dims) > 1):
            self.fail(name, n.op_type, f"scale {scale!r} of {name!r} must be a build-time constant scalar or 1-D tensor",
                      S_QDQ_IO)
        if len(n.input) > 2 and n.input[2]:
            self.check_zero_point(n, n.name or name, n.input[2])

    # -- nodes --------------------------------------------------------------------------------
    def check_nodes(self):
        for i, n in enumerate(G.all_nodes(self.m.graph)):
            name, op = _node_name(n, i), n.op_type
            if n.domain not in ("", "ai.onnx"):
                self.fail(name, op, f"custom domain {n.domain!r}: TensorRT needs a plugin for it")
                continue
            if op in UNSUPPORTED:
                self.fail(name, op, f"TensorRT does not support {op}", "onnx-tensorrt docs/operators.md ('N')")
                continue
            rule = OPS.get(op)
            if rule is None:
                self.fail(name, op, f"{op} is not in dsedge's TensorRT support table; check onnx-tensorrt "
                          "operators.md for this version and add a row to dsedge/engine/support.py")
                continue
            if self.trt < rule.since:
                self.fail(name, op, f"{op} needs TensorRT {'.'.join(map(str, rule.since))}", rule.source)
            if rule.types and len(n.input) > rule.typed_input:
                dtype = self.types.get(n.input[rule.typed_input])
                if dtype and dtype != "UNDEFINED" and dtype not in rule.types:
                    self.fail(name, op, f"input {n.input[rule.typed_input]!r} is {dtype}; TensorRT's {op} takes "
                              f"{', '.join(sorted(rule.types))}", rule.source)
            if rule.const_inputs and not (rule.const_until and self.trt >= rule.const_until):
                for k in rule.const_inputs:
                    if len(n.input) > k and n.input[k] and n.input[k] not in self.const:
                        self.fail(name, op, f"input {k} ({n.input[k]!r}) must be a build-time constant: "
                                  f"{rule.note}", rule.source)
            if op == "Cast":
                to = G.type_name(_attrs(n).get("to", 0))
                if to not in OPS["Cast"].types:
                    self.fail(name, op, f"Cast to {to}: TensorRT casts to {', '.join(sorted(OPS['Cast'].types))}",
                              rule.source)
            if op == "DequantizeLinear":
                self.check_dq(n, name)
            elif op == "QuantizeLinear":
                self.check_q(n, name)

    def check_q(self, n, name):
        out = self.types.get(n.output[0], "UNDEFINED")
        if out == "INT4" and n.input[0] not in self.const:
            self.fail(name, "QuantizeLinear", "INT4 quantization of activations: TensorRT quantizes only weights "
                      "to INT4", QUANT["INT4"].source)

    def check_dq(self, n, name):
        op = "DequantizeLinear"
        x = n.input[0]
        dtype = self.types.get(x, "UNDEFINED")
        rule = QUANT.get(dtype)
        if rule is None:
            self.fail(name, op, f"quantized input {x!r} is {dtype}; TensorRT dequantizes "
                      f"{', '.join(sorted(QUANTIZED_TYPES))} only", OPS[op].source)
            return
        self.needs.add(rule.precision)
        a = _attrs(n)
        block = int(a.get("block_size", 0) or 0)
        if self.trt < rule.since:
            self.fail(name, op, f"{dtype} DequantizeLinear needs TensorRT {'.'.join(map(str, rule.since))}", rule.source)
        if self.opset < rule.min_opset:
            self.fail(name, op, f"{dtype} DequantizeLinear needs opset {rule.min_opset} (graph has {self.opset})",
                      rule.source)
        if block and self.opset < 21:
            self.fail(name, op, f"block_size needs DequantizeLinear-21 (graph opset {self.opset}): "
                      "'Unrecognized attribute: block_size'", rule.source)
        if self.cc < rule.min_cc:
            self.fail(name, op, f"{dtype} needs compute capability {'.'.join(map(str, rule.min_cc))}, "
                      f"{self.t.name} has {self.t.gpu.compute_capability}", rule.source)
        if rule.weights_only and x not in self.const:
            self.fail(name, op, f"{dtype} input {x!r} is not a constant: TensorRT takes {dtype} for weights only "
                      "(an initializer behind DequantizeLinear)", rule.source)
        scale = n.input[1] if len(n.input) > 1 else ""
        if self.types.get(scale) not in SCALE_TYPES:
            self.fail(name, op, f"scale {scale!r} is {self.types.get(scale)}; TensorRT takes FLOAT, FLOAT16 or BFLOAT16")
        if rule.blocked == "required" and not block:
            self.fail(name, op, f"{dtype} needs per-block scales (block_size); per-tensor / per-channel "
                      f"{dtype} is not supported", rule.source)
        elif rule.blocked == "no" and block:
            self.fail(name, op, f"blocked quantization of {dtype} is not supported (TensorRT blocks INT4 only)",
                      rule.source)
        if block:
            self.check_blocks(n, name, x, scale, int(a.get("axis", 1)), block, rule)
        if rule.consumers:
            for c in self.consumers.get(n.output[0], []):
                if c.op_type not in rule.consumers:
                    self.fail(name, op, f"{dtype} weights feed {c.op_type} ({c.name}); TensorRT runs {dtype} "
                              f"weight-only through {' / '.join(sorted(rule.consumers))} only", rule.source)
        if len(n.input) > 2 and n.input[2]:
            self.check_zero_point(n, name, n.input[2])

    def check_blocks(self, n, name, x, scale, axis, block, rule):
        op = "DequantizeLinear"
        if rule.block_sizes and block not in rule.block_sizes:
            self.fail(name, op, f"block_size {block}: TensorRT supports {sorted(rule.block_sizes)}", rule.source)
        if scale not in self.const:
            self.fail(name, op, f"blocked scale {scale!r} must be a constant", rule.source)
        xi, si = self.inits.get(x), self.inits.get(scale)
        if xi is None or si is None:
            return
        xd, sd = list(xi.dims), list(si.dims)
        ax = axis % len(xd) if xd else axis
        if ax < len(xd) - 2:
            self.fail(name, op, f"block axis {axis} of a rank-{len(xd)} weight: the block dimension must be one of "
                      "the last two", rule.source)
        if len(sd) != len(xd):
            self.fail(name, op, f"scale rank {len(sd)} != weight rank {len(xd)} (blocked scales have the weight's rank)")
            return
        if xd[ax] % block:
            self.fail(name, op, f"weight dim {xd[ax]} on axis {axis} is not a multiple of block_size {block}")
        want = [d // block if k == ax else d for k, d in enumerate(xd)]
        if sd != want:
            self.fail(name, op, f"scale shape {sd} != {want} for weight {xd}, axis {axis}, block_size {block}")

    def check_zero_point(self, n, name, zp):
        op = "DequantizeLinear"
        if zp not in self.const:
            self.fail(name, op, f"zero point {zp!r} must be a constant zero", "onnx-tensorrt docs/operators.md")
            return
        values = G.tensor_values(self.m, zp, self.base)
        if values is None:
            self.notes.append(f"{name}: zero point {zp!r} not read (external data not at hand); must be all zero")
        elif values.astype("int64").any():
            self.fail(name, op, f"zero point {zp!r} is not zero (asymmetric quantization): TensorRT requires "
                      "x_zero_point = 0; quantize symmetrically (no --asym)", "onnx-tensorrt docs/operators.md")

    # -- precisions and shapes ----------------------------------------------------------------
    def check_precisions(self):
        for p in sorted(self.needs):
            if p not in self.t.precisions:
                self.fail("graph", "", f"the graph uses {p}, which {self.t.name} does not list among its precisions "
                          f"({', '.join(self.t.precisions)})", self.t.source_file or "")

    def check_profiles(self):
        sig = G.signature(self.m)
        try:
            profs = make_profiles(self.t, sig)
        except TargetError as e:
            self.fail("graph", "", e.problem)
            return
        for p in profs:
            for i, which in enumerate(("min", "opt", "max")):
                seen: dict[str, tuple[int, str]] = {}
                for name, r in p.shapes.items():
                    shape = (r.min, r.opt, r.max)[i]
                    dims = sig.inputs[name].dims
                    for d, v in zip(dims, shape):
                        if isinstance(d, int) and d != v:
                            self.fail(name, "", f"{p.name} profile {which} gives {v} for a static dim {d}")
                        elif isinstance(d, str):
                            if d in seen and seen[d][0] != v:
                                self.fail(name, "", f"{p.name} profile {which}: dim {d!r} is {v} here but "
                                          f"{seen[d][0]} in {seen[d][1]}; the graph says they are one size")
                            seen.setdefault(d, (v, name))
                    if which == "max" and name == "attention_mask" and shape[1] > self.t.profile.max_context:
                        self.fail(name, "", f"{p.name} profile covers {shape[1]} tokens, over max_context "
                                  f"{self.t.profile.max_context}")
        covered = {k for p in profs for k in p.shapes}
        for name in sig.inputs:
            if name not in covered:
                self.fail(name, "", "no optimization profile covers this input")


def check_onnx(path_or_model, target) -> CompatReport:
    """Check an ONNX file (or an artifact folder, or a loaded ModelProto) against `target`."""
    model, base = G.load(path_or_model)
    c = _Checker(model, base, target)
    c.check_versions()
    c.check_types()
    c.check_quantized_io()
    c.check_nodes()
    c.check_precisions()
    c.check_profiles()
    ops = dict(sorted(Counter(n.op_type for n in G.all_nodes(model.graph)).items()))
    return CompatReport(target.name, target.tensorrt.version, c.opset, ops, c.problems, c.notes,
                        table_for(target.tensorrt.version).to_dict())
