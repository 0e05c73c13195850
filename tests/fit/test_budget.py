"""fit.budget.weight_budget: usable - KV cache - workspace - runtime - the weights that are not
units, each figure taken from the planner (plan.memory.plan_memory) or worked out here from
config.json and the checkpoint's own tensor shapes; --fit-bits binds when it is the smaller."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsedge import reference
from dsedge.fit.budget import plan_fit, weight_budget
from dsedge.fit.units import checkpoint_units, choices, config_units, unit_bytes
from dsedge.load import open_checkpoint
from dsedge.plan.memory import GiB, model_tensors, plan_memory
from dsedge.quantize.configs import Fp16Config
from dsedge.targets import find_target
from tests.conftest import REFERENCE_NAMES

CONFIGS = Path(__file__).parents[2] / "src" / "dsedge" / "archs" / "configs"


def _ckpt_units(name):
    ckpt = open_checkpoint(reference.checkpoint_path(name))
    tied = f"{ckpt.spec.head}.weight" not in ckpt.index
    units = checkpoint_units(ckpt.spec, ckpt.n_layers, lambda n: tuple(ckpt.index[f"{n}.weight"].shape), tied)
    return ckpt, units


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _kv_by_hand(cfg: dict, context: int, batch: int, per_value: int = 2) -> int:
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * hd * context * batch * per_value


@pytest.mark.parametrize("name", REFERENCE_NAMES)
@pytest.mark.parametrize("target", ["orin-nano-8", "orin", "h100"])
def test_budget_is_usable_less_kv_workspace_runtime_and_unfitted_weights(name, target):
    ckpt, units = _ckpt_units(name)
    cfg, tgt = ckpt.raw_config, find_target(target)
    b = weight_budget(cfg, tgt, units)
    p = plan_memory(cfg, tgt, Fp16Config())
    unit_keys = {f"{u.name}.weight" for u in units}
    # the weights that are not units, from the checkpoint's tensors (norms, biases; Qwen3's q_norm /
    # k_norm too), at FP16
    fixed = sum(2 * _numel(t.shape) for k, t in ckpt.index.items() if k not in unit_keys)
    assert b.usable_bytes == int(tgt.memory.usable_gb * GiB) == p.usable_bytes
    assert b.runtime_bytes == int(tgt.memory.runtime_overhead_gb * GiB)
    assert b.context == p.context and b.batch == p.batch == tgt.profile.max_batch
    assert b.kv_bytes == _kv_by_hand(cfg, b.context, b.batch) == p.kv_bytes
    assert b.workspace_bytes == p.workspace_bytes
    assert b.bits_bytes is None and b.binding == "target memory"
    assert b.params == sum(_numel(ckpt.index[k].shape) for k in unit_keys)
    assert fixed > 0 and b.fixed_bytes == fixed
    want = p.usable_bytes - p.kv_bytes - p.workspace_bytes - p.overhead_bytes - fixed
    assert b.target_bytes == want and b.bytes == want


@pytest.mark.parametrize("bits", [4.5, 5, 6.25, 8])
def test_fit_bits_binds_when_smaller(bits):
    ckpt, units = _ckpt_units("qwen2-tiny")
    b = weight_budget(ckpt.raw_config, find_target("orin"), units, max_bits=bits)
    params = sum(u.out_features * u.in_features for u in units)
    assert b.bits_bytes == int(bits * params / 8) < b.target_bytes
    assert b.bytes == b.bits_bytes and b.binding == "--fit-bits"
    assert b.to_dict()["bits_per_weight"] == pytest.approx(bits, abs=1e-3)
    assert b.to_dict()["binding"] == "--fit-bits" and b.to_dict()["bytes"] == b.bytes


def _cfg(name):
    return json.loads((CONFIGS / f"{name}.json").read_text())


def test_target_binds_when_fit_bits_allows_more():
    """R1-Distill-Qwen-7B on orin-nano-8 (5.5 GiB usable) at 4096: the memory binds, not 16 bits."""
    cfg, tgt = _cfg("r1-distill-qwen-7b"), find_target("orin-nano-8")
    units = config_units(model_tensors(cfg))
    b = weight_budget(cfg, tgt, units, context=4096, max_bits=16)
    assert b.bits_bytes == int(16 * b.params / 8) > b.target_bytes
    assert b.bytes == b.target_bytes and b.binding == "target memory"
    p = plan_memory(cfg, tgt, Fp16Config(), 4096)
    fixed = p.weight_bytes - sum(unit_bytes(u, choices(u, 128)[-1][1]) for u in units)
    assert fixed == p.weight_parts["norms+biases"]
    assert b.bytes == p.usable_bytes - p.kv_bytes - p.workspace_bytes - p.overhead_bytes - fixed


@pytest.mark.parametrize("kv_cache,per_value", [("fp16", 2), ("int8", 1)])
def test_context_moves_the_kv_cache_and_the_budget_by_it(kv_cache, per_value):
    cfg, tgt = _cfg("r1-distill-qwen-7b"), find_target("orin-nano-8")
    units = config_units(model_tensors(cfg))
    # both contexts above the target's longest prompt: the workspace stays, only the cache moves
    assert tgt.profile.max_prompt <= 2048
    short, long = (weight_budget(cfg, tgt, units, context=c, kv_cache=kv_cache) for c in (2048, 8192))
    assert short.context == 2048 and long.context == 8192
    assert short.kv_bytes == _kv_by_hand(cfg, 2048, 1, per_value) and long.kv_bytes == 4 * short.kv_bytes
    assert short.workspace_bytes == long.workspace_bytes
    assert short.bytes - long.bytes == long.kv_bytes - short.kv_bytes > 0


def test_the_cache_dtype_moves_the_budget_by_the_cache():
    ckpt, units = _ckpt_units("qwen2-tiny")
    tgt = find_target("orin")
    fp16, int8 = (weight_budget(ckpt.raw_config, tgt, units, context=512, kv_cache=k) for k in ("fp16", "int8"))
    assert fp16.kv_bytes == 2 * int8.kv_bytes
    assert int8.bytes - fp16.bytes == fp16.kv_bytes - int8.kv_bytes


def test_plan_fit_agrees_with_the_budget_and_the_cheapest_mix():
    cfg, tgt = _cfg("r1-distill-qwen-7b"), find_target("orin-nano-8")
    units = config_units(model_tensors(cfg))
    plan, fit = plan_fit(cfg, tgt, context=4096)
    b = weight_budget(cfg, tgt, units, context=4096)
    cheapest = sum(unit_bytes(u, choices(u, 128)[0][1]) for u in units)
    assert fit["budget"]["bytes"] == b.bytes and fit["cheapest_bytes"] == cheapest
    assert fit["room_bytes"] == b.bytes - cheapest and fit["fits"] == (cheapest <= b.bytes)
    # the plan of the cheapest mix stores the units at their cheapest and the rest at FP16
    assert plan.weight_bytes == cheapest + b.fixed_bytes
