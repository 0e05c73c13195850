"""MoE calibration hooks: the router probe's load-balancing loss and expert counts (what keeps the
tiny MoE reference from collapsing onto a few experts, and what the report counts per expert)."""
from __future__ import annotations

import pytest
import torch

from dsedge.archs.moe import RouterProbe
from dsedge.reference.train import make_config

MOE_FAMILY = "deepseek_v2"


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(make_config(MOE_FAMILY, 200), dtype=torch.float32)


def test_probe_finds_every_moe_router(model):
    probe = RouterProbe(model)
    cfg = model.config
    assert sorted(probe.counts) == [f"model.layers.{i}.mlp.gate" for i in range(cfg.first_k_dense_replace,
                                                                                  cfg.num_hidden_layers)]
    x = torch.randint(0, 200, (2, 16))
    model(input_ids=x)
    for c in probe.counts.values():   # every token picked top_k experts
        assert int(c.sum()) == 2 * 16 * cfg.num_experts_per_tok


def test_balance_loss_is_one_when_uniform_and_larger_when_collapsed(model):
    probe = RouterProbe(model)
    gates = [model.get_submodule(n) for n in probe.counts]
    x = torch.randint(0, 200, (2, 16))
    with torch.no_grad():
        saved = [g.weight.clone() for g in gates]
        for g in gates:
            g.weight.zero_()                        # uniform probabilities
    model(input_ids=x)
    assert float(probe.aux_loss()) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        for g in gates:
            g.weight[:2] = 5.0                      # experts 0 and 1 take everything
    h = model.model.embed_tokens(x)
    model(inputs_embeds=h + 1.0)                    # positive inputs -> large logits for 0 and 1
    collapsed = float(probe.aux_loss())
    with torch.no_grad():
        for g, w in zip(gates, saved):
            g.weight.copy_(w)
    assert collapsed > 1.5
