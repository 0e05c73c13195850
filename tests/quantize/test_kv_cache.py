"""INT8 KV cache primitives: scales, the fake quantization the graph's Q/DQ computes, calibration
on a reference checkpoint, and the PyTorch cache that stores what the INT8 graph stores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsedge import reference
from dsedge.errors import UsageError
from dsedge.load import open_checkpoint
from dsedge.quantize.kv_cache import (MIN_SCALE, QMAX, calibrate, check_kv_dtype, fake_quant, int8_cache_factory,
                                      scales_from_amax)


def test_scales_are_amax_over_127_in_fp16_with_a_floor():
    amax = np.array([[1.0, 0.0], [127.0, 3e-3]], np.float32)
    s = scales_from_amax(amax)
    assert s[1, 0] == 1.0 and s[0, 1] == np.float32(np.float16(MIN_SCALE))
    assert s[0, 0] == np.float32(np.float16(1 / 127)) and s.dtype == np.float32
    assert np.all(s == s.astype(np.float16).astype(np.float32))          # what the graph stores


def test_fake_quant_rounds_saturates_and_is_idempotent():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, generator=g) * 2                           # (B, H, P, D)
    scale = torch.rand(3, 4, generator=g) * 0.05 + 0.01                    # (H, D)
    y = fake_quant(x, scale)
    s = scale[None, :, None, :]
    inside = x.abs() <= QMAX * s
    assert torch.all((y - x).abs()[inside] <= s.expand_as(x)[inside] / 2 + 1e-6)
    assert torch.all(y.abs() <= (QMAX + 1) * s + 1e-6)                     # saturated, never wrapped
    assert torch.equal(fake_quant(y, scale), y)                            # a written code never changes
    codes = y / s
    assert torch.allclose(codes, codes.round(), atol=1e-4)


def test_calibrated_scales_cover_the_cache_the_model_writes():
    ckpt = open_checkpoint(reference.checkpoint_path(reference.DEFAULT_MODEL))
    model = ckpt.load_model(torch.float32).eval()
    ids = torch.randint(4, model.config.vocab_size, (6, 24), generator=torch.Generator().manual_seed(0))
    scales = calibrate(model, ids, batch=4)
    L = model.config.num_hidden_layers
    assert sorted(scales) == sorted(f"past_key_values.{i}.{k}" for i in range(L) for k in ("key", "value"))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    k0 = out.past_key_values.layers[0].keys.abs().amax(dim=(0, 2)).numpy()   # (H, D)
    s = scales["past_key_values.0.key"]
    assert s.shape == k0.shape
    np.testing.assert_allclose(s * QMAX, k0, rtol=2e-3)                     # amax, to FP16 rounding
    assert len({float(v) for v in s.ravel()}) > 1                           # per channel, not one scale


def test_int8_cache_stores_codes_and_attends_to_the_new_tokens_unrounded():
    ckpt = open_checkpoint(reference.checkpoint_path(reference.DEFAULT_MODEL))
    model = ckpt.load_model(torch.float32).eval()
    ids = torch.randint(4, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    scales = calibrate(model, ids)
    new = int8_cache_factory(model.config, scales)
    with torch.no_grad():
        fp16 = model(input_ids=ids, use_cache=True)
        q = model(input_ids=ids, past_key_values=new(), use_cache=True)
    # the prefill attends to its own tokens at full precision: same logits as without a cache
    torch.testing.assert_close(q.logits, fp16.logits)
    k = q.past_key_values.layers[0].keys
    s = torch.from_numpy(scales["past_key_values.0.key"])[None, :, None, :]
    torch.testing.assert_close(k / s, (k / s).round(), atol=1e-4, rtol=0)
    assert not torch.equal(k, fp16.past_key_values.layers[0].keys)


def test_unknown_cache_dtype_is_a_usage_error():
    with pytest.raises(UsageError, match="--kv-cache int4"):
        check_kv_dtype("int4")

