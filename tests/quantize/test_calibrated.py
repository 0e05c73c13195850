"""Calibrated methods (GPTQ, AWQ, SmoothQuant W8A8) through llm-compressor and GPTQModel:
every decoder linear becomes a QuantizedWeight equal to the library's own dequantization, and
on the reference checkpoints the methods rank as their papers say (perplexity, fake-quantized
PyTorch models)."""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from dsedge import reference
from dsedge.calib import CalibData
from dsedge.check.accuracy import EvalData, evaluate
from dsedge.errors import ConfigError
from dsedge.load import open_checkpoint
from dsedge.quantize import (METHODS, AwqConfig, GptqConfig, Int4WeightOnlyConfig, QuantResult, SmoothQuantConfig,
                             WeightSource, apply_act_fake_quant, apply_fake_quant, apply_tensors, config_from_dict,
                             quantize_model)
from dsedge.reference import train

pytest.importorskip("llmcompressor")

CALIB_SAMPLES, CALIB_TOKENS = 32, 128
TEXT_CALIB, TEXT_EVAL = (32, 256), (64, 256)   # qwen2-kjv: (windows, tokens) of calibration and eval


def _windows(tok, path, n: int, t: int) -> torch.Tensor:
    """The reference models' training protocol (train.encode_lines / make_windows): lines joined
    by </s>, windows starting with <s>. check.accuracy.load_eval joins lines with the tokenizer's
    own "\\n" ids, which qwen2-tiny's BPE encodes as two tokens it never saw in training."""
    return train.make_windows(train.encode_lines(tok, train.read_lines(path)), seq_len=t)[:n]


@pytest.fixture(scope="module")
def ckpts():
    out = {}

    def get(name):
        if name not in out:
            ck = open_checkpoint(reference.checkpoint_path(name))
            tok = ck.tokenizer()
            if name == reference.TEXT_MODEL:   # real text: the calibration recipe's and training's 256-token windows
                calib_path, eval_path, (n_cal, t_cal), (n_ev, t_ev) = (
                    reference.text_calib_path(), reference.text_eval_path(), TEXT_CALIB, TEXT_EVAL)
            else:
                calib_path, eval_path, (n_cal, t_cal), (n_ev, t_ev) = (
                    reference.calib_text_path(), reference.eval_text_path(), (CALIB_SAMPLES, CALIB_TOKENS), (32, 128))
            calib = CalibData(_windows(tok, calib_path, n_cal, t_cal), source=calib_path.name, sha256="", tokenizer=tok)
            data = EvalData(_windows(tok, eval_path, n_ev, t_ev).numpy(), [], eval_path.name, "", t_ev)
            out[name] = (ck, calib, data)
        return out[name]
    return get


_RESULTS: dict = {}


def run(ckpts, name: str, config) -> tuple[QuantResult, object]:
    """(QuantResult, the model the library left behind), cached per (checkpoint, config)."""
    key = (name, repr(config))
    if key not in _RESULTS:
        ck, calib, _ = ckpts(name)
        model = ck.load_model(torch.float32)
        source = WeightSource(tensor=lambda k: ck.tensor(k).float(), model=lambda: model)
        t = time.perf_counter()
        res = quantize_model(config, source, ck.spec, ck.n_layers, lambda n: ck.index[f"{n}.weight"].shape[1], calib)
        print(f"{name} {config.label()}: quantized in {time.perf_counter() - t:.1f} s")
        _RESULTS[key] = (res, model)
    return _RESULTS[key]


def fake_quant_model(ck, res: QuantResult):
    """A fresh FP32 model with the method's result applied as the exported graph will apply it."""
    model = ck.load_model(torch.float32)
    apply_tensors(model, res.tensors)
    apply_fake_quant(model, res.weights)
    apply_act_fake_quant(model, res.act_scales)
    return model


def _logits(model):
    def fn(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(input_ids=torch.from_numpy(ids)).logits.float().numpy()
    return fn


W4 = dict(bits=4, group_size=128)
METHOD_CONFIGS = {"gptq": GptqConfig(**W4), "awq": AwqConfig(**W4), "smoothquant": SmoothQuantConfig()}


# ---- configs ---------------------------------------------------------------------------------
def test_methods_are_registered_and_round_trip():
    for cfg in METHOD_CONFIGS.values():
        assert METHODS[cfg.method] is type(cfg)
        assert config_from_dict(cfg.to_dict()) == cfg
    assert SmoothQuantConfig.activation_scheme == "static-per-tensor-symmetric-int8"


@pytest.mark.parametrize("make,match", [
    (lambda: AwqConfig(clipping=True), "clipping"),
    (lambda: SmoothQuantConfig(backend="gptqmodel"), "--backend gptqmodel is not supported"),
    (lambda: SmoothQuantConfig(bits=4), "--bits 4"),
    (lambda: GptqConfig(damping=0), "--damping"),
    (lambda: GptqConfig(backend="autogptq"), "--backend autogptq"),
    (lambda: GptqConfig(act_order=False, static_groups=True), "only applies with --act-order"),
    (lambda: GptqConfig(backend="gptqmodel", block_size=64), "block size is fixed at 128"),
    (lambda: AwqConfig(backend="gptqmodel", grid=10), "grid is fixed at 20"),
    (lambda: AwqConfig(backend="gptqmodel", clipping=False), "always runs the clipping"),
])
def test_bad_method_options_are_named(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_llmcompressor_act_order_without_static_groups_is_refused(ckpts):
    with pytest.raises(ConfigError, match="static-groups"):
        run(ckpts, "llama-tiny", GptqConfig(act_order=True, static_groups=False))


@pytest.mark.parametrize("backend,act_order,static", [("llmcompressor", True, True), ("gptqmodel", False, False)])
def test_gptq_act_order_default_is_the_backends_own(backend, act_order, static):
    """llm-compressor's GPTQModifier defaults to actorder "static" (act-order, groups in channel
    order), GPTQModel's desc_act to off; the config resolves None to it, so the manifest has it."""
    c = GptqConfig(backend=backend)
    assert (c.act_order, c.static_groups) == (act_order, static)
    assert GptqConfig(backend=backend, act_order=True).static_groups is static


def test_act_fake_quant_is_onnx_quantize_dequantize():
    """The hook against torch's own per-tensor fake quantization (round half to even, saturate)."""
    lin = torch.nn.Linear(64, 8)
    x = torch.randn(4, 64) * 3
    s = 0.02
    ref = lin(torch.fake_quantize_per_tensor_affine(x, s, 0, -128, 127))
    handles = apply_act_fake_quant(lin, {"": s})
    assert torch.equal(lin(x), ref) and not torch.equal(ref, lin.forward.__self__.__class__.forward(lin, x))
    for h in handles:
        h.remove()
    assert torch.equal(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))


# ---- the AWQ CPU workaround ------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available() or torch.accelerator.is_available(), reason="CPU-only snag")
def test_awq_pin_memory_workaround_is_still_needed():
    """llm-compressor 0.14's AWQ pins its activation cache unconditionally, which raises on a
    machine with no accelerator. When this test fails, the library fixed it: drop
    backends/llmcompressor.py's _cpu_pin_memory_workaround."""
    from llmcompressor.pipelines.cache import IntermediatesCache, IntermediateValue

    cache = IntermediatesCache([{"x": IntermediateValue(torch.ones(4), torch.device("cpu"))}], "cpu")
    with pytest.raises(RuntimeError, match="accelerator"):
        cache.pin_memory(0)


# ---- conversion is exact ---------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_every_decoder_linear_equals_the_library_dequantization(ckpts, ref_name, method):
    from dsedge.quantize.backends.llmcompressor import library_dequantized

    config = METHOD_CONFIGS[method]
    res, lib_model = run(ckpts, ref_name, config)
    ck = ckpts(ref_name)[0]
    names = ck.spec.block_linears(ck.n_layers)
    assert sorted(res.weights) == sorted(names)
    lo, hi = -(1 << (config.bits - 1)), (1 << (config.bits - 1)) - 1
    for n in names:
        qw, module = res.weights[n], lib_model.get_submodule(n)
        assert qw.bits == config.bits and qw.group_size == config.group_size and qw.symmetric
        assert qw.codes.dtype == torch.int8 and lo <= int(qw.codes.min()) and int(qw.codes.max()) <= hi
        assert torch.equal(qw.dequantize(), library_dequantized(module)), n
    if method == "gptq":  # GPTQ writes its own rounding into the weight: the same values again
        for n in names:
            assert torch.equal(res.weights[n].dequantize(), lib_model.get_submodule(n).weight.detach()), n


@pytest.mark.parametrize("method", ["awq", "smoothquant"])
def test_scaled_tensors_and_act_scales_reproduce_the_library_model(ckpts, ref_name, method):
    """A fresh model + our QuantResult (changed norms / biases, fake-quantized weights, activation
    Q/DQ hooks) computes what the library's own calibrated model computes."""
    res, lib_model = run(ckpts, ref_name, METHOD_CONFIGS[method])
    ck, _, data = ckpts(ref_name)
    assert res.tensors and all(k.endswith((".weight", ".bias")) and "proj.weight" not in k for k in res.tensors)
    assert any("layernorm" in k for k in res.tensors)
    if method == "smoothquant":
        assert sorted(res.act_scales) == sorted(res.weights) and all(s > 0 for s in res.act_scales.values())
    else:
        assert res.act_scales == {}
    ids = data.windows[:4]
    ours = _logits(fake_quant_model(ck, res))(ids)
    theirs = _logits(lib_model)(ids)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    plain = _logits(ck.load_model(torch.float32))(ids)
    assert np.abs(plain - theirs).max() > 1e-3  # the comparison is not vacuous


# ---- accuracy ordering -----------------------------------------------------------------------
_PPL: dict = {}


def perplexities(ckpts, ref_name) -> dict[str, float]:
    """Perplexity of FP32, RTN, GPTQ, AWQ (4-bit g128) and SmoothQuant W8A8 fake-quantized models."""
    if ref_name not in _PPL:
        ck, _, data = ckpts(ref_name)
        fns = {"fp": _logits(ck.load_model(torch.float32))}
        fns["rtn"] = _logits(fake_quant_model(ck, run(ckpts, ref_name, Int4WeightOnlyConfig(**W4))[0]))
        for method, cfg in METHOD_CONFIGS.items():
            fns[method] = _logits(fake_quant_model(ck, run(ckpts, ref_name, cfg)[0]))
        metrics = evaluate(fns, data, reference="fp")
        _PPL[ref_name] = {k: m.perplexity for k, m in metrics.items()}
        _KL[ref_name] = {k: m.kl for k, m in metrics.items()}
        ppl = _PPL[ref_name]
        print(ref_name, {k: f"{v:.4f} ({100 * (v / ppl['fp'] - 1):+.3f} %, KL {_KL[ref_name][k]:.3g})"
                         for k, v in ppl.items()})
    return _PPL[ref_name]


_KL: dict = {}


def test_smoothquant_w8a8_stays_within_3_percent_of_fp(ckpts, ref_name):
    ppl = perplexities(ckpts, ref_name)
    assert abs(ppl["smoothquant"] / ppl["fp"] - 1) < 0.03


# llama-tiny: llm-compressor's AWQ loses to RTN there when run directly too (its own default
# mappings; benchmarks/compare_llmcompressor.py, 2026-12-04: KL 1.06e-3 against RTN's 5.69e-4), so
# that is the library on a toy corpus, not dsedge's conversion (which equals the library's own
# dequantization, test_every_decoder_linear_equals_the_library_dequantization). AWQ's ranking on
# real text is asserted on qwen2-kjv (test_methods_rank_on_real_text).
AWQ_LOSES_TO_RTN = {"llama-tiny"}


def test_gptq_and_awq_lose_less_than_rtn(ckpts, ref_name):
    """GPTQ and AWQ against round-to-nearest at 4-bit g128, measured as KL divergence of the
    next-token distributions from FP. Perplexity cannot rank them on these checkpoints: RTN moves
    it by hundredths of a percent, within what calibration noise moves it either way (measured
    2026-11-23: see the closing note of issue 3), so the ranking is asserted on KL."""
    perplexities(ckpts, ref_name)
    kl = _KL[ref_name]
    assert kl["rtn"] > 0, kl
    assert kl["gptq"] < kl["rtn"], kl
    assert (kl["awq"] < kl["rtn"]) is (ref_name not in AWQ_LOSES_TO_RTN), kl


def test_methods_rank_on_real_text(ckpts):
    """On the real-text reference (qwen2-kjv, KJV passages it never saw) INT4 round-to-nearest costs
    a measurable perplexity, and GPTQ and AWQ each lose less than it in perplexity and in KL."""
    ppl, kl = perplexities(ckpts, reference.TEXT_MODEL), _KL[reference.TEXT_MODEL]
    change = {k: v / ppl["fp"] - 1 for k, v in ppl.items()}
    assert change["rtn"] >= 0.002, change   # measurable (0.30 %); the model's >= 0.3 %: tests/reference/test_text.py
    for method in ("gptq", "awq"):
        assert change[method] < change["rtn"] and kl[method] < kl["rtn"], (method, change, kl)
