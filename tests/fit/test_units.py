"""fit.units: the bytes of each storage choice against what the quantizer really stores
(QuantizedWeight.nbytes of quantize.rtn.quantize_weight) and the planner's count, the choices'
order and fallbacks, and the units of the reference checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from dsedge import reference
from dsedge.fit.units import (FP16, Unit, checkpoint_units, choices, config_units, fittable, part_of,
                              scheme_bytes, unit_bytes)
from dsedge.load import open_checkpoint
from dsedge.plan.memory import Tensors, model_tensors, tensor_bytes
from dsedge.quantize.configs import Int4WeightOnlyConfig, Int8WeightOnlyConfig, LayerScheme
from dsedge.quantize.rtn import quantize_weight
from tests.conftest import MOE_REFERENCE, REFERENCE_NAMES

SHAPES = [(64, 256), (256, 768), (768, 256), (100, 384), (3, 128)]


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("bits,group", [(4, 128), (4, 64), (8, -1)])
def test_scheme_bytes_is_what_the_quantizer_stores(n, k, bits, group):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(n * k + bits))
    q = quantize_weight(w, bits, group, True)
    assert scheme_bytes(n, k, LayerScheme(bits, group)) == q.nbytes()


@pytest.mark.parametrize("n,k", SHAPES)
def test_fp16_bytes_are_two_per_weight(n, k):
    assert scheme_bytes(n, k, FP16) == 2 * n * k
    assert unit_bytes(Unit("x", "mlp", n, k, count=3), FP16) == 3 * 2 * n * k


@pytest.mark.parametrize("n,k", SHAPES)
def test_scheme_bytes_is_the_planners_count(n, k):
    t = Tensors("mlp", k, n, 1, 1, True)
    assert tensor_bytes(t, Int4WeightOnlyConfig()) == scheme_bytes(n, k, Int4WeightOnlyConfig().scheme_for(k))
    assert tensor_bytes(t, Int8WeightOnlyConfig()) == scheme_bytes(n, k, LayerScheme(8, -1))


@pytest.mark.parametrize("part", ["attention", "mlp", "lm_head"])
@pytest.mark.parametrize("group", [128, 64])
def test_a_linear_chooses_int4_int8_fp16_cheapest_first(part, group):
    u = Unit("model.layers.0.mlp.up_proj", part, 768, 256)
    opts = choices(u, group)
    assert [label for label, _ in opts] == ["int4", "int8", "fp16"]
    assert opts[0][1] == LayerScheme(4, group)
    assert opts[1][1] == LayerScheme(8, -1) and opts[2][1].bits == 16
    sizes = [unit_bytes(u, s) for _, s in opts]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_the_embedding_has_no_int4():
    u = Unit("model.embed_tokens", "embeddings", 1024, 256)
    opts = choices(u, 128)
    assert [label for label, _ in opts] == ["int8", "fp16"]
    assert opts[0][1] == LayerScheme(8, -1)   # one scale per row (the lookup's form, export/weights.py)
    assert unit_bytes(u, opts[0][1]) < unit_bytes(u, opts[1][1])


def test_a_k_the_group_does_not_divide_takes_the_rtn_fallback():
    # 192 = 1.5 x 128: INT4 at group 64, as `--method rtn` stores it (WeightOnlyConfig.scheme_for)
    u = Unit("model.layers.0.mlp.down_proj", "mlp", 256, 192)
    opts = choices(u, 128)
    assert opts[0][0] == "int4" and opts[0][1] == Int4WeightOnlyConfig(group_size=128).scheme_for(192)
    assert (opts[0][1].bits, opts[0][1].group_size) == (4, 64) and opts[0][1].fallback
    w = torch.randn(256, 192, generator=torch.Generator().manual_seed(0))
    assert unit_bytes(u, opts[0][1]) == quantize_weight(w, 4, 64, True).nbytes()
    # 200: no INT4 block of 64..128 divides it: RTN's fallback is INT8 per channel, which is the
    # INT8 choice already: no INT4 choice, and no two choices storing the same thing
    u = Unit("model.layers.0.mlp.down_proj", "mlp", 256, 200)
    opts = choices(u, 128)
    assert [label for label, _ in opts] == ["int8", "fp16"]
    assert len({(s.bits, s.group_size) for _, s in opts}) == len(opts)


def _units(name):
    ckpt = open_checkpoint(reference.checkpoint_path(name))
    tied = f"{ckpt.spec.head}.weight" not in ckpt.index
    return ckpt, checkpoint_units(ckpt.spec, ckpt.n_layers, lambda n: tuple(ckpt.index[f"{n}.weight"].shape), tied)


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_checkpoint_units_cover_every_matrix_of_a_reference(name):
    ckpt, units = _units(name)
    spec = ckpt.spec
    names = [u.name for u in units]
    assert names == [spec.embed, *spec.block_linears(ckpt.n_layers), spec.head]
    assert len(set(names)) == len(names)
    # every matrix the checkpoint stores is a unit, at its stored shape (norms and biases are not)
    matrices = {k[:-len(".weight")]: tuple(t.shape) for k, t in ckpt.index.items() if len(t.shape) == 2}
    assert {u.name: (u.out_features, u.in_features) for u in units} == matrices
    parts = {u.name: u.part for u in units}
    assert parts[spec.embed] == "embeddings" and parts[spec.head] == "lm_head"
    for n in spec.block_linears(ckpt.n_layers):
        assert parts[n] == ("attention" if ".self_attn." in n else "mlp")
        assert part_of(n, spec) == parts[n]


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_config_units_count_what_checkpoint_units_do(name):
    """`dsedge plan --fit` (config.json only) and the build (the checkpoint's shapes) agree on the
    fitted weights and their bytes at every unit's cheapest and at FP16."""
    ckpt, units = _units(name)
    cfg = json.loads((ckpt.path / "config.json").read_text())
    from_config = config_units(model_tensors(cfg))
    assert sum(u.params for u in from_config) == sum(u.params for u in units)
    for pick in (0, -1):
        assert sum(unit_bytes(u, choices(u, 128)[pick][1]) for u in from_config) == \
            sum(unit_bytes(u, choices(u, 128)[pick][1]) for u in units)


def test_tied_embeddings_are_not_units():
    ckpt, _ = _units(REFERENCE_NAMES[0])
    spec = ckpt.spec
    units = checkpoint_units(spec, ckpt.n_layers, lambda n: tuple(ckpt.index[f"{n}.weight"].shape), tied=True)
    names = [u.name for u in units]
    assert names == spec.block_linears(ckpt.n_layers)
    assert spec.embed not in names and spec.head not in names


def test_fittable():
    assert all(fittable(open_checkpoint(reference.checkpoint_path(n)).spec) is None for n in REFERENCE_NAMES)
    why = fittable(open_checkpoint(reference.checkpoint_path(MOE_REFERENCE)).spec)
    assert why and "mixture of experts" in why
