"""What TensorRT's ONNX parser takes, per TensorRT version, as data.

Every row names its source. Versions are (major, minor). `check_onnx` (compat.py) reads these
tables; nothing here imports TensorRT.

Sources (S_*) are quoted by key so that each row stays one line:
"""
from __future__ import annotations

from dataclasses import dataclass, field

S_OPS = "onnx-tensorrt docs/operators.md (TensorRT 10.x operator matrix, 'Supported Types' column)"
S_CHANGELOG = "onnx-tensorrt docs/Changelog.md"
S_QSCHEMES = "TensorRT developer guide, 'Quantization Schemes' (INT4: per-block scales, block sizes {64, 128}, weights only)"
S_EXPLICIT = "TensorRT developer guide, 'Explicit Quantization' (pre-quantized weights need a DequantizeLayer between weights and the linear op)"
S_OPSET = ("ai.onnx opset of the ONNX release the parser is built on: TensorRT 10.0-10.5 ship ONNX 1.16 (opset 21, IR 10); "
           "10.6 updated to ONNX 1.17 (opset 22) per onnx-tensorrt Changelog; operators.md for 10.15 states opset 9 to 24")
S_HWCOMPAT = "TensorRT 10.9.0 release notes: new hardware compatibility level kSAME_COMPUTE_CAPABILITY; support matrix: not on JetPack"
S_MATRIX = "TensorRT support matrix, 'Hardware and Precision' (FP8 from compute capability 8.9, BF16 from 8.0)"

# ONNX TensorProto element type names as TensorRT's table spells them
FLOATS = frozenset({"FLOAT", "FLOAT16", "BFLOAT16"})
INTS = frozenset({"INT32", "INT64"})
F_I = FLOATS | INTS
F_I_B = F_I | {"BOOL"}


@dataclass(frozen=True)
class TrtVersion:
    version: tuple[int, int]
    max_opset: int
    max_ir_version: int
    source: str = S_OPSET


TRT_VERSIONS: dict[tuple[int, int], TrtVersion] = {v.version: v for v in [
    TrtVersion((10, 0), 21, 10), TrtVersion((10, 1), 21, 10), TrtVersion((10, 2), 21, 10),
    TrtVersion((10, 3), 21, 10), TrtVersion((10, 4), 21, 10), TrtVersion((10, 5), 21, 10),
    TrtVersion((10, 6), 22, 10), TrtVersion((10, 7), 22, 10), TrtVersion((10, 8), 22, 10),
    TrtVersion((10, 9), 22, 10), TrtVersion((10, 10), 22, 10), TrtVersion((10, 11), 22, 10),
    TrtVersion((10, 12), 22, 10), TrtVersion((10, 13), 22, 10),
    TrtVersion((10, 15), 24, 11, "onnx-tensorrt docs/operators.md: 'TensorRT 10.15 supports ... opset 9 to opset 24'"),
    # JetPack 7.2's TensorRT on Orin. Opset 24 still: the parser's first opset-25 support is the
    # TensorRT 11.5 GA parser update ('Added support for ONNX opset 25', onnx-tensorrt release/11.5-GA).
    TrtVersion((10, 16), 24, 11, "onnx-tensorrt docs/operators.md for 10.15 (opset 9 to 24); opset 25 first in "
                                 "the TensorRT 11.5 GA parser update (onnx-tensorrt release notes)"),
]}
MIN_OPSET = 9  # operators.md: "inclusive range of opset 9 to ..."


@dataclass(frozen=True)
class OpRule:
    """One operator. `types`: element types TensorRT takes for input `typed_input` (empty:
    any type TensorRT has). `const_inputs`: input indices that must be build-time constants
    (initializer or Constant), until TensorRT `const_until` lifted it (None: never)."""
    op: str
    types: frozenset[str] = frozenset()
    typed_input: int = 0
    since: tuple[int, int] = (10, 0)
    const_inputs: tuple[int, ...] = ()
    const_until: tuple[int, int] | None = None
    note: str = ""
    source: str = S_OPS


def _rows(types, *ops, **kw) -> list[OpRule]:
    return [OpRule(op, frozenset(types), **kw) for op in ops]


_REDUCE = dict(const_inputs=(1,), note="`axes` must be an initializer")
OPS: dict[str, OpRule] = {r.op: r for r in [
    *_rows(F_I, "Add", "Sub", "Mul", "Div", "Max", "Min", "Neg", "Abs", "Equal", "Greater", "GreaterOrEqual",
           "Less", "LessOrEqual", "Pow", "Mod", "Sum", "Mean", "Sign", "ArgMax", "ArgMin", "Relu", "Range",
           "IsNaN", "CumSum"),
    *_rows(F_I, "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
           "ReduceL1", "ReduceL2", "ReduceLogSumExp", **_REDUCE),
    *_rows(FLOATS, "MatMul", "Gemm", "Softmax", "LogSoftmax", "Sqrt", "Reciprocal", "Exp", "Log", "Erf", "Tanh",
           "Sigmoid", "Sin", "Cos", "Tan", "Floor", "Ceil", "Round", "Elu", "LeakyRelu", "Softplus", "HardSigmoid",
           "HardSwish", "Clip", "LayerNormalization", "GroupNormalization", "InstanceNormalization", "Einsum",
           "Conv", "ConvTranspose", "IsInf", "Dropout"),
    *_rows({"BOOL"}, "And", "Or", "Xor", "Not"),
    # Gather reads INT8 too: an INT8 embedding table (--fit) is gathered before it is dequantized
    OpRule("Gather", frozenset(F_I_B | {"INT8"}), source=f"{S_OPS} (Gather: FP32, FP16, BF16, FP8, INT8, INT32, INT64, BOOL)"),
    *_rows(F_I_B, "Reshape", "Transpose", "Concat", "Expand", "GatherElements", "GatherND", "Flatten",
           "Identity", "Shape", "Size", "Tile", "Split", "If", "Loop", "Trilu", "Pad", "EyeLike", "OneHot",
           "ScatterND", "ScatterElements"),
    *_rows(F_I_B, "Slice", const_inputs=(3,), const_until=(10, 3), note="`axes` input must be an initializer before 10.3",
           source=f"{S_CHANGELOG}: 10.3 'Added support for tensor axes inputs for Slice nodes'"),
    *_rows(F_I_B, "Squeeze", "Unsqueeze", const_inputs=(1,), note="`axes` must be resolvable to a constant"),
    OpRule("Where", frozenset(F_I_B), typed_input=1),
    OpRule("TopK", frozenset(F_I), const_inputs=(1,), note="`K` must be an initializer"),
    OpRule("NonZero", frozenset(F_I_B)),
    OpRule("Cast", frozenset(F_I_B | {"UINT8"})),
    OpRule("CastLike", frozenset(F_I_B | {"UINT8"})),
    OpRule("Constant"), OpRule("ConstantOfShape"),
    OpRule("DequantizeLinear", frozenset({"INT8", "INT4", "FLOAT8E4M3FN"}), note="`x_zero_point` must be zero; see DQ rules"),
    OpRule("QuantizeLinear", frozenset(FLOATS), note="`y_zero_point` must be 0"),
    *_rows((), "HannWindow", "HammingWindow", "BlackmanWindow", since=(10, 4),  # input: an integer size
           source=f"{S_CHANGELOG}: 10.4 added BlackmanWindow, HammingWindow, HannWindow"),
    *_rows(("FLOAT",), "STFT", since=(10, 5), source=f"{S_CHANGELOG}: 10.5 added real-valued STFT"),
    # The LLM operators of ONNX opsets 23/24. Types are not listed ((): any TensorRT type) because
    # the release notes that add them do not state types.
    *_rows((), "Attention", since=(10, 14),
           source="onnx-tensorrt release 10.14 GA parser update: 'Added support for the Attention operator'"),
    *_rows((), "RotaryEmbedding", "RMSNormalization", "TensorScatter", since=(10, 15),
           source=f"{S_CHANGELOG}: 10.15 'Added support for RotaryEmbedding, RMSNormalization and TensorScatter'"),
]}

# operators.md lists these as "N" (not supported) in every TensorRT 10 release.
UNSUPPORTED = frozenset({
    "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im", "Compress",
    "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear", "ImageDecoder", "MatMulInteger",
    "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional",
    "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch", "SequenceAt",
    "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SequenceMap",
    "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer", "StringSplit",
    "TfIdfVectorizer", "Unique",
})

# Element types TensorRT has at all (operators.md preamble: "DOUBLE, FLOAT32, FLOAT16, BFLOAT16, FP8,
# FP4, INT32, INT64, INT8, INT4, UINT8, and BOOL"; INT8/INT4/FP8 only as quantized types; UINT8
# only as network input/output; DOUBLE cast down to FLOAT).
TENSOR_TYPES = frozenset(F_I_B | {"INT8", "INT4", "FLOAT8E4M3FN", "UINT8", "DOUBLE"})
QUANTIZED_TYPES = frozenset({"INT8", "INT4", "FLOAT8E4M3FN"})
IO_ONLY_TYPES = frozenset({"UINT8"})


@dataclass(frozen=True)
class QuantRule:
    """Constraints on DequantizeLinear by quantized type."""
    dtype: str
    since: tuple[int, int]
    min_opset: int
    weights_only: bool               # input x must be a build-time constant
    blocked: str                     # "required", "allowed" or "no"
    block_sizes: frozenset[int] = frozenset()
    consumers: frozenset[str] = frozenset()  # ops the DQ output may feed (empty: any)
    min_cc: tuple[int, int] = (0, 0)
    precision: str = ""              # the Target.precisions entry it needs
    source: str = ""


QUANT: dict[str, QuantRule] = {q.dtype: q for q in [
    QuantRule("INT4", (10, 0), 21, weights_only=True, blocked="required", block_sizes=frozenset({64, 128}),
              consumers=frozenset({"MatMul", "Gemm"}), precision="int4_weight_only",
              source=f"{S_CHANGELOG}: 10.0 EA 'Added support for INT4 quantization'; {S_QSCHEMES}; {S_EXPLICIT}; "
                     "ONNX DequantizeLinear-21 adds int4 and block_size"),
    QuantRule("INT8", (10, 0), 13, weights_only=False, blocked="no", precision="int8",
              source=f"{S_OPS}; ONNX DequantizeLinear-13 adds per-axis"),
    QuantRule("FLOAT8E4M3FN", (10, 0), 19, weights_only=False, blocked="no", min_cc=(8, 9), precision="fp8",
              source=f"{S_CHANGELOG}: 9.0 'Added support for FP8'; {S_MATRIX}; ONNX DequantizeLinear-19 adds float8"),
]}
SCALE_TYPES = FLOATS  # DequantizeLinear scale = output type; TensorRT: FP32, FP16 or BF16

# Activation dtypes -> the Target.precisions entry they need, and the compute capability
ACTIVATION_PRECISION = {"FLOAT16": "fp16", "BFLOAT16": "bf16"}
# Quantized network inputs / outputs (an INT8 KV cache): TensorRT takes INT8 I/O tensors in an
# explicitly quantized network, read only through a Dequantize layer and written by a Quantize
# layer, each with a build-time constant scalar or 1-D scale and a zero zero point.
S_QDQ_IO = ("TensorRT operator docs, Dequantize / Quantize ('scale ... must be a build-time constant scalar or a 1D "
            "tensor'; T1: int8); developer guide, 'Working with Quantized Types' (symmetric, zero point 0)")
MIN_CC = {"BFLOAT16": ((8, 0), S_MATRIX), "FLOAT8E4M3FN": ((8, 9), S_MATRIX)}


@dataclass(frozen=True)
class HardwareCompat:
    level: str             # "none" | "same_compute_capability"
    since: tuple[int, int]
    discrete_only: bool
    source: str = S_HWCOMPAT


HW_COMPAT = HardwareCompat("same_compute_capability", (10, 9), discrete_only=True)


def parse_version(text: str) -> tuple[int, int]:
    """'10.3' or '10.3.0.30' -> (10, 3)."""
    parts = str(text).strip().split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ValueError(f"not a TensorRT version: {text!r}") from None


def trt_version_row(version: str | tuple[int, int]) -> TrtVersion | None:
    """The table row for a TensorRT version, or the closest older one of the same major version."""
    v = parse_version(version) if isinstance(version, str) else version
    older = [k for k in TRT_VERSIONS if k[0] == v[0] and k <= v]
    return TRT_VERSIONS[max(older)] if older else None


@dataclass
class SupportTable:
    """The table as one serialisable object, for the report ("checked against ...")."""
    tensorrt: str
    max_opset: int
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"tensorrt": self.tensorrt, "max_opset": self.max_opset, "sources": self.sources}


def table_for(version: str) -> SupportTable:
    row = trt_version_row(version)
    srcs = sorted({S_OPS, S_CHANGELOG, S_QSCHEMES, S_EXPLICIT, S_MATRIX, row.source if row else S_OPSET})
    return SupportTable(str(version), row.max_opset if row else 0, srcs)
