"""Engine-build settings: pure functions of the target and the graph signature."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsedge.engine.graph import GraphSignature, Tensor
from dsedge.engine.settings import GiB, WORKSPACE_CAP, engine_settings, hardware_compatibility, profiles
from dsedge.errors import TargetError
from dsedge.targets import find_target, list_targets

LAYERS, KV_HEADS, HEAD_DIM, VOCAB = 2, 2, 32, 1024


def _sig(weight_bytes: int = 10 << 20, layers: int = LAYERS) -> GraphSignature:
    ids = Tensor("INT64", ("batch", "sequence_length"))
    inputs = {"input_ids": ids, "attention_mask": Tensor("INT64", ("batch", "total_sequence_length")),
              "position_ids": ids}
    cache = Tensor("FLOAT16", ("batch", KV_HEADS, "past_sequence_length", HEAD_DIM))
    inputs |= {f"past_key_values.{i}.{kv}": cache for i in range(layers) for kv in ("key", "value")}
    return GraphSignature(inputs, {"logits": Tensor("FLOAT16", ("batch", "sequence_length", VOCAB))}, weight_bytes)


@pytest.mark.parametrize("name", sorted(list_targets()))
def test_profiles_cover_the_targets_context(name):
    t = find_target(name)
    c, b, prompt = t.profile.max_context, t.profile.max_batch, t.profile.max_prompt
    prefill, decode = profiles(t, _sig())
    assert (prefill.name, decode.name) == ("prefill", "decode")
    for p in (prefill, decode):
        for i in range(3):     # min, opt, max: the mask is always past + new tokens
            ids, mask, past = (getattr(p.shapes[k], ("min", "opt", "max")[i])
                               for k in ("input_ids", "attention_mask", "past_key_values.0.key"))
            assert mask[1] == past[2] + ids[1] and ids[0] == mask[0] == past[0]
            assert (past[1], past[3]) == (KV_HEADS, HEAD_DIM)
        assert p.shapes["input_ids"].min[0] == 1 and p.shapes["input_ids"].max[0] == b
    assert prefill.shapes["input_ids"].max == (b, prompt) and prefill.shapes["past_key_values.1.value"].max[2] == 0
    assert prefill.shapes["input_ids"].opt == (1, min(128, prompt))
    assert decode.shapes["input_ids"].max == (b, 1)
    assert decode.shapes["past_key_values.0.key"].max[2] == c - 1 and decode.shapes["attention_mask"].max == (b, c)


def test_memory_plan_by_hand():
    """Orin: usable memory less the runtime overhead, weights twice (parsed + engine, one shared memory)."""
    t = find_target("orin")
    s = engine_settings(t, _sig(3 * GiB), "/tmp/cache")
    m = s.memory
    c = t.profile.max_context
    past = 2 * LAYERS * KV_HEADS * (c - 1) * HEAD_DIM * 2
    present = 2 * LAYERS * KV_HEADS * c * HEAD_DIM * 2
    assert m.kv_cache_bytes == past + present
    assert m.logits_bytes == t.profile.max_prompt * VOCAB * 2
    assert (m.weight_copies, m.reserve_bytes, m.usable_bytes) == (
        2, int(t.memory.runtime_overhead_gb * GiB), int(t.memory.usable_gb * GiB))
    assert m.workspace_bytes == WORKSPACE_CAP and m.fits
    assert 2 * m.weight_bytes + m.kv_cache_bytes + m.logits_bytes + m.reserve_bytes + m.workspace_bytes <= m.usable_bytes


def test_workspace_shrinks_then_the_build_does_not_fit():
    t = find_target("orin")
    base = engine_settings(t, _sig(0), "/tmp/cache").memory
    room = base.usable_bytes - base.reserve_bytes - base.kv_cache_bytes - base.logits_bytes
    tight = engine_settings(t, _sig((room - WORKSPACE_CAP // 2) // 2), "/tmp/cache").memory
    assert abs(tight.workspace_bytes - WORKSPACE_CAP // 2) <= 1 and tight.fits
    s = engine_settings(t, _sig(room // 2), "/tmp/cache")
    assert not s.memory.fits and s.memory.workspace_bytes == 0 and "does not fit" in s.notes[-1]
    rtx = engine_settings(find_target("rtx-4090"), _sig(20 * GiB), "/tmp/cache").memory
    assert rtx.weight_copies == 1


def test_hardware_compatibility_only_for_same_cc_discrete_targets():
    ts = list(list_targets().values())
    assert hardware_compatibility(find_target("rtx-4090"), ts) == ("same_compute_capability", ("l40",))
    assert hardware_compatibility(find_target("l40"), ts) == ("same_compute_capability", ("rtx-4090",))
    assert hardware_compatibility(find_target("h100"), ts) == ("same_compute_capability", ())
    for jetson in ("orin", "orin-nano-8"):
        assert hardware_compatibility(find_target(jetson), ts) == ("none", ())
    rtx = find_target("rtx-4090")
    old = rtx.model_copy(update={"tensorrt": rtx.tensorrt.model_copy(update={"version": "10.8"})})
    assert hardware_compatibility(old, ts) == ("none", ())       # SAME_COMPUTE_CAPABILITY came in 10.9


def test_settings_are_serialisable_and_cache_is_per_version_and_cc():
    s = engine_settings(find_target("rtx"), _sig(), "/c", list_targets().values())
    d = json.loads(json.dumps(s.to_dict()))
    assert d["strongly_typed"] and d["builder_flags"] == [] and d["builder_optimization_level"] == 3
    assert d["profiles"]["decode"]["attention_mask"]["max"] == [4, 8192]
    assert d["timing_cache"] == "/c/tensorrt/timing-trt10.16-sm89.cache"
    assert engine_settings(find_target("orin"), _sig(), "/c").timing_cache.endswith("timing-trt10.3-sm87.cache")


def test_bad_inputs():
    with pytest.raises(TargetError, match="optimization level 7"):
        engine_settings(find_target("orin"), _sig(), "/c", optimization_level=7)
    sig = _sig()
    sig.inputs["inputs_embeds"] = Tensor("FLOAT16", ("batch", "sequence_length", 64))
    with pytest.raises(TargetError, match="inputs_embeds"):
        profiles(find_target("orin"), sig)


def test_profiles_are_capped_at_max_position_embeddings():
    """A model trained to 512 positions gets no profile past 512 on a 4096-token target."""
    t = find_target("orin")
    assert t.profile.max_context > 512 and t.profile.max_prompt > 512
    prefill, decode = profiles(t, _sig(), max_positions=512)
    assert prefill.shapes["input_ids"].max[1] == 512 and prefill.shapes["attention_mask"].max[1] == 512
    assert decode.shapes["past_key_values.0.key"].max[2] == 511 and decode.shapes["attention_mask"].max[1] == 512
    assert decode.shapes["past_key_values.0.key"].opt[2] == 256
    s = engine_settings(t, _sig(), cache_root=Path("/tmp"), max_positions=512)
    assert any("max_position_embeddings 512" in n for n in s.notes)
    uncapped = engine_settings(t, _sig(), cache_root=Path("/tmp"))
    assert s.memory.kv_cache_bytes < uncapped.memory.kv_cache_bytes
    # a model with more positions than the target's context keeps the target's
    for more in (None, t.profile.max_context, 10 * t.profile.max_context):
        _, d = profiles(t, _sig(), max_positions=more)
        assert d.shapes["attention_mask"].max[1] == t.profile.max_context
