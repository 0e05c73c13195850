"""The host planner on DeepSeek-V2-Lite's full size (15.7 B parameters), from its tensor shapes
alone: calibrated methods are refused with the FP32 figure, streaming methods fit a 24 GiB host."""
import math
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


def test_a_1_5b_build_plans_within_half_its_size_plus_2_gib():
    """R1-Distill-Qwen-1.5B (3.55 GB in BF16) under --max-memory 0.5 x size + 2 GiB: the streaming
    export and the lean truncated check (load/lean.py) both fit; the FP32-embedding estimate of
    before (4.4 GiB of stream, 4.1 GiB of truncated check) did not."""
    ckpt = _headers_only("r1-distill-qwen-1.5b")
    size = sum(2 * math.prod(i.shape) for i in ckpt.index.values())
    goal = int(0.5 * size + 2 * GiB)
    for bits in (4, 8, 16):
        plan = plan_host(ckpt, available=goal, quant=config_from_options(bits=bits))
        assert plan.scope == "truncated" and plan.fits, (bits, plan.describe())
        # the head's 233 M values in flight: its pages and its FP16 copy, not an FP32 one as well
        assert plan.stream_peak_bytes < 2 * GiB + 233e6 * 5


def test_the_moe_truncated_check_keeps_the_fp32_load_estimate():
    """DeepSeek-V2-Lite's fused experts are loaded by transformers (load/lean.py declines them):
    its truncated estimate holds the first layers in FP32 beside their checkpoint pages."""
    ckpt = _headers_only("deepseek-v2-lite")
    plan = plan_host(ckpt, available=24 * GiB, quant=config_from_options(bits=4))
    lean_like = plan_host(SimpleNamespace(**{**vars(ckpt), "spec": REGISTRY["Qwen2ForCausalLM"]}),
                          available=24 * GiB, quant=config_from_options(bits=4))
    assert plan.truncated_check_bytes > lean_like.truncated_check_bytes
