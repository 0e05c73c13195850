"""The architecture registry: one spec per family, each complete (reference checkpoint, planner
shape, real shapes), and its data consistent with the model transformers builds from it."""
from __future__ import annotations

import re

import pytest
import torch

from dsedge import reference
from dsedge.archs import REGISTRY, arch_for, published_config, supported
from dsedge.errors import UnsupportedArchitectureError
from dsedge.plan.memory import plan_memory
from dsedge.quantize import config_from_options
from dsedge.targets import find_target


def test_registry_is_keyed_by_architectures0():
    for name, spec in REGISTRY.items():
        assert spec.name == name and arch_for(name, plan_only=True) is spec
        assert arch_for({"architectures": [name]}, plan_only=True) is spec
    with pytest.raises(UnsupportedArchitectureError, match="DeepseekV3ForCausalLM .* not supported yet"):
        arch_for("DeepseekV3ForCausalLM")
    with pytest.raises(UnsupportedArchitectureError, match="MistralForCausalLM"):
        arch_for({"architectures": ["MistralForCausalLM"]}, plan_only=True)


@pytest.mark.parametrize("spec", supported(), ids=lambda s: s.family)
def test_every_family_has_a_reference_checkpoint(spec):
    assert spec.reference is not None
    assert reference.REFERENCE_MODELS[spec.reference.name] == spec.name
    assert (reference.checkpoint_path(spec.reference.name) / "model.safetensors").is_file()


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=lambda s: s.family)
def test_every_family_has_real_shapes_the_planner_plans(spec):
    assert spec.real_shapes, f"{spec.name}: no published config.json in archs/configs/"
    for short in spec.real_shapes:
        cfg = published_config(short)
        assert cfg["architectures"] == [spec.name] and cfg["model_type"] == spec.model_type
        p = plan_memory(cfg, find_target("h100"), config_from_options(bits=4), context=4096, batch=1)
        assert p.architecture == spec.name and p.params > 1e9 and p.kv_bytes > 0


def _meta_model(spec, **overrides):
    from transformers import AutoModelForCausalLM

    from dsedge.reference.train import make_config

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(make_config(spec.family, 300, **overrides))


@pytest.mark.parametrize("spec", supported(), ids=lambda s: s.family)
def test_spec_names_what_the_model_has(spec):
    """Every quantized linear and every smoothing pattern exists in the model transformers builds;
    the cache layout is the one transformers' DynamicCache holds (checked numerically in the export
    tests); the MoE-layer rule matches the model's blocks."""
    model = _meta_model(spec)
    cfg = model.config.to_dict()
    modules = {n for n, _ in model.named_modules()}
    linears = spec.block_linears(cfg["num_hidden_layers"], cfg)
    fused = [n for n in linears if spec.moe is not None and spec.moe.fused_slice(n)]
    assert set(linears) - set(fused) <= modules
    if spec.attention == "mla":   # the query-compression form (q_lora_rank) has its own modules
        q_lora = _meta_model(spec, q_lora_rank=64)
        cfg_q = q_lora.config.to_dict()
        names_q = {n for n, _ in q_lora.named_modules()}
        assert {n for n in spec.block_linears(cfg_q["num_hidden_layers"], cfg_q) if not spec.moe.fused_slice(n)} <= names_q
        modules |= names_q
    for m in spec.awq_mappings + spec.smoothquant_mappings:
        for pattern in (m.smooth, *m.balance):
            rx = re.compile(pattern.removeprefix("re:"))
            assert any(rx.match(n) for n in modules), pattern
    for i, layer in enumerate(model.get_submodule(spec.layers_prefix)):
        has_experts = hasattr(layer.mlp, "experts")
        assert has_experts == (spec.moe is not None and spec.moe.is_moe_layer(cfg, i))
    if spec.moe is not None:
        cfg2 = dict(cfg, first_k_dense_replace=0, moe_layer_freq=2)
        assert [spec.moe.is_moe_layer(cfg2, i) for i in range(4)] == [True, False, True, False]
