"""The truncated check's lean model (FP16 embedding and head storage) gives the logits and cache of
the usual FP32 load of the same FP16-rounded weights, on the reference checkpoints and on real
shapes (tied head, yarn rope), and declines the layouts it does not load (fused MoE experts)."""
from __future__ import annotations

import pytest
import torch

from dsedge import reference
from dsedge.load.checkpoint import open_checkpoint
from dsedge.load.lean import ChunkedHead, lean_model
from dsedge.reference.synthetic import write_checkpoint
from dsedge.stages.load import fp16_weights
from dsedge.stages.quantize import round_to_fp16


def _same_outputs(ckpt, layers: int) -> None:
    lean = lean_model(ckpt, layers, fp16_weights(ckpt))
    assert lean is not None
    usual = round_to_fp16(ckpt.load_model(torch.float32, layers=layers))
    head = lean.get_submodule(ckpt.spec.head)
    assert isinstance(head, ChunkedHead) and head.weight.dtype == torch.float16
    assert lean.get_submodule(ckpt.spec.embed).weight.dtype == torch.float16
    ids = torch.randint(0, lean.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = lean(input_ids=ids, use_cache=True), usual(input_ids=ids, use_cache=True)
        assert a.logits.dtype == torch.float32
        torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=1e-4)
        nxt = b.logits[:, -1:].argmax(-1)
        a2 = lean(input_ids=nxt, past_key_values=a.past_key_values, use_cache=True)
        b2 = usual(input_ids=nxt, past_key_values=b.past_key_values, use_cache=True)
        torch.testing.assert_close(a2.logits, b2.logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["llama-tiny", "qwen2-tiny", "qwen3-tiny"])
def test_lean_model_matches_the_fp32_load(name):
    _same_outputs(open_checkpoint(reference.checkpoint_path(name)), 1)


@pytest.mark.parametrize("name,tie", [("r1-distill-qwen-1.5b", True), ("r1-0528-qwen3-8b", False)])
def test_lean_model_matches_on_real_shapes(tmp_path, name, tie):
    """Real dimensions cut to 1 layer and 20,000 vocabulary rows (more than 2 head chunks, not a
    multiple of one): the tied head read from the embedding, Qwen3's yarn rope and q/k norms."""
    ckpt = open_checkpoint(write_checkpoint(name, tmp_path / name, layers=1, vocab=20000, tie=tie))
    _same_outputs(ckpt, 1)


def test_lean_model_declines_fused_experts():
    ckpt = open_checkpoint(reference.checkpoint_path("deepseek-v2-tiny"))
    assert lean_model(ckpt, 2, fp16_weights(ckpt)) is None   # layer 1 is an MoE layer
