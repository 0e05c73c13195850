"""GPTQModel as the second backend of GPTQ and AWQ: its quantization is read back exactly (every
decoder linear equals GPTQModel's own dequantization of the checkpoint it wrote; AWQ's scaled
norms are taken over), act-order's channel permutation survives export, and on the reference
checkpoint both methods are compared with round-to-nearest."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dsedge import reference
from dsedge.calib import CalibData
from dsedge.check.accuracy import evaluate
from dsedge.load import open_checkpoint
from dsedge.quantize import AwqConfig, GptqConfig, Int4WeightOnlyConfig
from dsedge.quantize.backends import gptqmodel as backend
from tests.load.test_prequant import _gptqmodel, _library_weight
from tests.quantize.test_calibrated import _logits, ckpts, fake_quant_model, run  # noqa: F401 (fixture)

pytest.importorskip("gptqmodel")

NAME = "qwen2-tiny"
CONFIGS = {"gptq-act-order": GptqConfig(bits=4, group_size=128, backend="gptqmodel", act_order=True),
           "awq": AwqConfig(bits=4, group_size=128, backend="gptqmodel")}
_DONE: dict = {}


@pytest.fixture(scope="module")
def quantized(ckpts, tmp_path_factory):  # noqa: F811
    """kind -> (QuantResult, folder of GPTQModel's checkpoint), each run once."""
    def get(kind):
        if kind not in _DONE:
            ck, calib, _ = ckpts(NAME)
            # 8 of the 32 samples: GPTQModel's AWQ (with its clipping search) is the slowest step on CPU
            calib = CalibData(calib.input_ids[:8], calib.source, calib.sha256, tokenizer=calib.tokenizer)
            model = ck.load_model(torch.float32)
            config = CONFIGS[kind]
            keep = tmp_path_factory.mktemp(kind)
            fn = backend.gptq if config.method == "gptq" else backend.awq
            res = fn(config, model, ck.spec.block_linears(ck.n_layers), calib, open_checkpoint, keep=keep)
            res.config = config
            _DONE[kind] = (res, keep)
        return _DONE[kind]
    return get


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_every_decoder_linear_equals_gptqmodels_dequantization(quantized, ckpts, kind):  # noqa: F811
    res, folder = quantized(kind)
    ck = ckpts(NAME)[0]
    names = ck.spec.block_linears(ck.n_layers)
    assert sorted(res.weights) == sorted(names)
    lib = _gptqmodel(folder)   # GPTQModel's own loader and CPU kernels on the checkpoint it wrote
    for n in names:
        qw = res.weights[n]
        assert qw.bits == 4 and qw.group_size == 128 and qw.symmetric and qw.codes.dtype == torch.int8
        assert torch.equal(qw.dequantize().half(), _library_weight(lib.get_submodule(n)).half()), n
    if kind == "gptq-act-order":  # desc_act: the columns were quantized in Hessian order
        assert sum(res.weights[n].perm is not None for n in names) > len(names) // 2
        assert res.tensors == {}
    else:                         # AWQ folds its scales into the norms: taken over from the checkpoint
        assert res.tensors and all(k.endswith("layernorm.weight") for k in res.tensors)
        from safetensors.torch import load_file

        saved = load_file(next(folder.glob("*.safetensors")))
        for k, t in res.tensors.items():
            assert torch.equal(t, saved[k].float()), k


def test_gptqmodel_methods_against_rtn(quantized, ckpts):  # noqa: F811
    """KL from FP (next-token distributions) of GPTQ with act-order and AWQ (with its clipping
    search) against round-to-nearest, 4-bit g128; the figures are printed for the comparison."""
    ck, _, data = ckpts(NAME)
    fns = {"fp": _logits(ck.load_model(torch.float32)),
           "rtn": _logits(fake_quant_model(ck, run(ckpts, NAME, Int4WeightOnlyConfig(bits=4, group_size=128))[0]))}
    for kind in CONFIGS:
        fns[kind] = _logits(fake_quant_model(ck, quantized(kind)[0]))
    m = evaluate(fns, data, reference="fp")
    kl = {k: v.kl for k, v in m.items()}
    print(NAME, {k: f"ppl {v.perplexity:.4f}, KL {v.kl:.3g}" for k, v in m.items()})
    assert kl["rtn"] > 0
    assert kl["gptq-act-order"] < kl["rtn"], kl
    assert kl["awq"] < kl["rtn"], kl


@pytest.mark.slow
def test_build_with_gptqmodel_act_order_exports_the_permutation(tmp_path):
    """`dsedge build --method gptq --backend gptqmodel --act-order` end to end: the permutation
    becomes a Gather of the activation's channels, and ONNX agrees with PyTorch."""
    from typer.testing import CliRunner

    from dsedge.cli import app

    recipe = tmp_path / "calib.yaml"
    recipe.write_text(f"source: {reference.calib_text_path()}\nsamples: 16\nseq_len: 128\nseed: 0\n")
    out = tmp_path / "a"
    r = CliRunner().invoke(app, ["build", "--method", "gptq", "--backend", "gptqmodel", "--act-order", "--bits", "4",
                                 "--calib", str(recipe), "-o", str(out), "--no-budget-fail", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["backend"] == "gptqmodel" and manifest["quantization"]["act_order"] is True
    assert report["export"]["ops"].get("Gather", 0) > 1          # the embedding lookup + permuted inputs
    fid = report["export_fidelity"]
    assert fid["max_abs_diff"] <= fid["atol"] + fid["rtol"] * fid["max_abs_logit"]
    assert report["greedy_generation"]["agrees"]
    assert report["onnx"]["kl"] < 0.05 and np.isfinite(report["onnx"]["perplexity"])


def test_importing_gptqmodel_leaves_the_root_logger_alone():
    """GPTQModel's import sets the root logger to INFO with a stderr handler; dsedge undoes it so
    other libraries' INFO records do not flood the build output."""
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    backend._import()
    assert (root.level, list(root.handlers)) == before
