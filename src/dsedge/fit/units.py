"""The units a fit chooses a precision for, and what each choice stores. Pure arithmetic.

A unit is one stored matrix (N out x K in; the embedding table is V x H, one scale per row).
Its choices, cheapest first:
  linear, lm_head: INT4 in blocks of g (or the fallback RTN takes where g does not divide K:
                   quantize.configs.WeightOnlyConfig.scheme_for), INT8 per output channel, FP16
  embedding:       INT8 per row, FP16 (TensorRT's INT4 is for MatMul / Gemm weights only)
Bytes are as stored in the artifact: packed codes + one FP16 scale per group (symmetric: no zero
points), the same count as QuantizedWeight.nbytes and the planner's tensor_bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..quantize.configs import Int4WeightOnlyConfig, LayerScheme

FP16 = LayerScheme(16, -1)


@dataclass(frozen=True)
class Unit:
    name: str            # module name (the planner's part name where it counts shapes, not names)
    part: str            # planner part: embeddings | attention | mlp | lm_head
    out_features: int    # N (embedding: vocabulary rows)
    in_features: int     # K (embedding: hidden size)
    count: int = 1       # identical matrices this unit stands for (plan from config.json: a shape group)

    @property
    def params(self) -> int:
        return self.out_features * self.in_features * self.count


def scheme_bytes(n: int, k: int, s: LayerScheme) -> int:
    """Stored bytes of one (N, K) matrix at scheme s (symmetric)."""
    if s.bits >= 16:
        return 2 * n * k
    groups = n * (1 if s.group_size == -1 else math.ceil(k / s.group_size))
    return math.ceil(n * k * s.bits / 8) + 2 * groups


def choices(unit: Unit, group_size: int) -> list[tuple[str, LayerScheme]]:
    """(label, scheme) of the unit's choices, cheapest first, no two storing the same thing."""
    int8 = LayerScheme(8, -1)
    if unit.part == "embeddings":
        return [("int8", int8), ("fp16", FP16)]
    int4 = Int4WeightOnlyConfig(group_size=group_size).scheme_for(unit.in_features)
    out = [("int4", int4)] if int4.bits == 4 else []
    return out + [("int8", int8), ("fp16", FP16)]


def unit_bytes(unit: Unit, s: LayerScheme) -> int:
    return unit.count * scheme_bytes(unit.out_features, unit.in_features, s)


def part_of(name: str, spec) -> str:
    if name == spec.head:
        return "lm_head"
    if name == spec.embed:
        return "embeddings"
    return "attention" if ".self_attn." in f".{name}." else "mlp"


def checkpoint_units(spec, n_layers: int, shape_of, tied: bool) -> list[Unit]:
    """The units of a checkpoint, in execution order. shape_of(module name) -> (N, K) of its
    weight. Tied embeddings (one matrix for the lookup and the head) are not fitted: choosing for
    one would choose for the other, which the graph stores once."""
    names = [spec.embed] if not tied else []
    names += spec.block_linears(n_layers)
    names += [spec.head] if not tied else []
    return [Unit(n, part_of(n, spec), *shape_of(n)) for n in names]


def config_units(tensors) -> list[Unit]:
    """Units from the planner's shape groups (plan.memory.model_tensors: config.json, no names):
    every decoder linear group, lm_head and the embedding table (untied)."""
    out = []
    for i, t in enumerate(tensors):   # names unique per group (q_proj and o_proj share a shape)
        if t.linear or (t.part == "lm_head") or (t.part == "embeddings" and t.active == 0):
            out.append(Unit(f"{t.part} {t.out_features}x{t.in_features} #{i}", t.part, t.out_features,
                            t.in_features, t.count))
    return out


def fittable(spec) -> str | None:
    """None where --fit takes the architecture; else why not."""
    if spec.moe is not None:
        return f"{spec.name} is a mixture of experts: --fit measures every unit, and an expert is a unit per expert"
    if spec.attention != "gqa":
        return f"{spec.name} uses multi-head latent attention, whose absorbed export keeps kv_b_proj FP16"
    return None
