"""fit.sensitivity on qwen2-tiny (transformers, float32, from the reference folder): each unit's
cost is the KL of the logits with that unit alone fake-quantized, worked out again here; the
model comes back bit-exact; mix_kl agrees with measure where they measure the same thing."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from dsedge import reference
from dsedge.fit import sensitivity
from dsedge.fit.units import FP16, checkpoint_units, choices
from dsedge.load import open_checkpoint
from dsedge.quantize.rtn import quantize_weight

NAME = "qwen2-tiny"


@pytest.fixture(scope="module")
def setup():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = reference.checkpoint_path(NAME)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(reference.calib_text_path().read_text(), return_tensors="pt").input_ids[0]
    t = 64
    ids = ids[: 2 * t].reshape(2, t)                                   # 2 windows of 64 tokens of real text
    ckpt = open_checkpoint(path)
    units = checkpoint_units(ckpt.spec, ckpt.n_layers, lambda n: tuple(ckpt.index[f"{n}.weight"].shape), False)
    options = {u.name: choices(u, 128) for u in units}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kl = sensitivity.measure(model, units, options, ids)
    return model, ids, units, options, before, kl


def _kl_by_hand(model, ids, name=None, scheme=None) -> float:
    """mean over tokens of KL(model || model with `name` at `scheme`), torch's kl_div."""
    with torch.no_grad():
        p = torch.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), -1)
        m = model
        if name is not None:
            m = copy.deepcopy(model)
            w = m.get_submodule(name).weight
            w.copy_(quantize_weight(w.detach().clone(), scheme.bits, scheme.group_size, True).dequantize(w.dtype))
        q = torch.log_softmax(m(input_ids=ids, use_cache=False).logits.float(), -1)
    return float(torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1).mean())


def test_every_lossy_choice_of_every_unit_is_measured_and_positive(setup):
    model, ids, units, options, before, kl = setup
    assert set(kl) == {u.name for u in units}
    for u in units:
        lossy = {label for label, s in options[u.name] if s.bits < 16}
        assert set(kl[u.name]) == lossy, u.name
        for label, v in kl[u.name].items():
            assert math.isfinite(v) and v > 0, (u.name, label, v)


def test_int8_costs_less_than_int4_for_most_units(setup):
    _, _, units, _, _, kl = setup
    both = [u.name for u in units if {"int4", "int8"} <= set(kl[u.name])]
    assert len(both) == len(units) - 1                                  # all but the embedding
    cheaper = [n for n in both if kl[n]["int8"] < kl[n]["int4"]]
    assert len(cheaper) >= 0.9 * len(both), {n: kl[n] for n in both if n not in cheaper}


def test_the_weights_are_restored_bit_exactly(setup):
    model, _, _, _, before, _ = setup
    after = model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k


@pytest.mark.parametrize("which,label", [(0, "int8"), (1, "int4"), (-1, "int4"), (-1, "int8"), (7, "int8")])
def test_a_units_cost_is_the_kl_with_it_alone_quantized(setup, which, label):
    model, ids, units, options, _, kl = setup
    u = units[which]
    scheme = dict(options[u.name])[label]
    assert kl[u.name][label] == pytest.approx(_kl_by_hand(model, ids, u.name, scheme), rel=1e-3, abs=1e-9)


def test_mix_kl_of_all_fp16_is_zero(setup):
    model, ids, units, _, _, _ = setup
    m = copy.deepcopy(model)
    assert sensitivity.mix_kl(m, {u.name: FP16 for u in units}, ids) < 1e-9
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), model.state_dict().values()))


def test_mix_kl_of_one_unit_is_its_measured_cost(setup):
    model, ids, units, options, _, kl = setup
    u = units[-1]                                                      # lm_head, the costliest at INT4
    schemes = {v.name: FP16 for v in units} | {u.name: dict(options[u.name])["int4"]}
    assert sensitivity.mix_kl(copy.deepcopy(model), schemes, ids) == pytest.approx(kl[u.name]["int4"], rel=1e-4)


def test_mix_kl_of_the_cheapest_mix_is_measured_on_it(setup):
    """Every unit at its cheapest: the mix's KL is the KL of that whole model, and above its
    costliest unit's alone."""
    model, ids, units, options, _, kl = setup
    schemes = {u.name: options[u.name][0][1] for u in units}
    m = copy.deepcopy(model)
    got = sensitivity.mix_kl(m, schemes, ids)
    for name in schemes:                                                # mix_kl quantized them in place
        assert not torch.equal(m.get_submodule(name).weight, model.get_submodule(name).weight), name
    assert got > max(kl[u.name][options[u.name][0][0]] for u in units)
    # by hand: every unit quantized from the original weights
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for name, s in schemes.items():
            w = ref.get_submodule(name).weight
            w.copy_(quantize_weight(w.detach().clone(), s.bits, s.group_size, True).dequantize(w.dtype))
        p = torch.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), -1)
        q = torch.log_softmax(ref(input_ids=ids, use_cache=False).logits.float(), -1)
    assert got == pytest.approx(float((p.exp() * (p - q)).sum(-1).mean()), rel=1e-4)


def test_windows_keep_the_reference_logprobs_under_ref_bytes():
    ids = torch.zeros(20, 1000, dtype=torch.long)
    w = sensitivity.windows(ids, vocab=1024)
    assert tuple(w.shape) == (sensitivity.MAX_WINDOWS, sensitivity.MAX_LEN)
    assert tuple(sensitivity.windows(ids[:3, :100], vocab=1024).shape) == (3, 100)
    # a vocabulary whose 8 x 256 log-probabilities would pass REF_BYTES: fewer windows
    vocab = sensitivity.REF_BYTES // (4 * sensitivity.MAX_LEN * 3)      # 3 windows fit
    w = sensitivity.windows(ids, vocab=vocab)
    assert w.shape[0] == 3 and 4 * vocab * w.numel() <= sensitivity.REF_BYTES
    assert sensitivity.windows(ids, vocab=10**9).shape[0] == 1        # at least one
