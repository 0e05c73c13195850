"""The host planner on DeepSeek-V2-Lite's full size (15.7 B parameters), from its tensor shapes
alone: calibrated methods are refused with the FP32 figure, streaming methods fit a 24 GiB host."""
from types import SimpleNamespace

from dsedge.archs import REGISTRY
from dsedge.plan.host import GiB, plan_host
from dsedge.quantize import config_from_options
from dsedge.reference.synthetic import synthetic_config, tensor_shapes


def _headers_only(name: str):
    """What plan_host reads of a checkpoint: its safetensors index (shapes), config and layer count."""
    cfg, _ = synthetic_config(name, layers=None)
    index = {k: SimpleNamespace(shape=s, dtype="BF16") for k, s in tensor_shapes(cfg).items()}
    return SimpleNamespace(index=index, raw_config=cfg, n_layers=cfg["num_hidden_layers"],
                           spec=REGISTRY[cfg["architectures"][0]])


def test_gptq_on_v2_lite_is_refused_with_the_fp32_figure():
    ckpt = _headers_only("deepseek-v2-lite")
    gptq = plan_host(ckpt, available=24 * GiB, quant=config_from_options("gptq"))
    assert 15.5e9 < gptq.params < 16e9
    assert not gptq.fits and gptq.quantize_bytes == gptq.peak_bytes > 70 * GiB
    assert "calibrates the whole model in FP32: about 7" in gptq.shortfall()
    rtn = plan_host(ckpt, available=24 * GiB, quant=config_from_options(bits=4))
    assert rtn.quantize_bytes == 0 and rtn.scope == "truncated" and rtn.fits
