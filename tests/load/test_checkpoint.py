import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsedge import reference
from dsedge.errors import CheckpointError, UsageError
from dsedge.load import open_checkpoint


def test_reference_checkpoints_open_and_validate(ref_name):
    ck = open_checkpoint(reference.checkpoint_path(ref_name))
    assert ck.architecture == reference.REFERENCE_MODELS[ref_name]
    ck.validate()
    linears = ck.spec.block_linears(ck.n_layers)
    assert len(linears) == 7 * ck.n_layers
    for name in linears:
        assert ck.index[f"{name}.weight"].shape[1] % 128 == 0
    assert len(ck.sha256()) == 64 and ck.sha256() == ck.sha256()


def test_sharded_checkpoint_is_read_through_its_index(ckpt_copy):
    ck_dir = ckpt_copy()
    sd = load_file(ck_dir / "model.safetensors")
    names = sorted(sd)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for f, keys in shards.items():
        save_file({k: sd[k] for k in keys}, ck_dir / f, metadata={"format": "pt"})
    (ck_dir / "model.safetensors").unlink()
    (ck_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    ck = open_checkpoint(ck_dir)
    ck.validate()
    assert len(ck.weight_files) == 2 and set(ck.index) == set(sd)
    assert torch.equal(ck.tensor(names[-1]), sd[names[-1]])
    (ck_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="names shard model-00002-of-00002.safetensors"):
        open_checkpoint(ck_dir)


def test_tensor_reads_one_tensor_memory_mapped(ref_name):
    ck = open_checkpoint(reference.checkpoint_path(ref_name))
    t = ck.tensor("model.layers.0.mlp.down_proj.weight")
    assert t.dtype == torch.bfloat16 and t.shape[1] % 128 == 0


def test_unsupported_quantization_config_is_named(ckpt_copy):
    ck_dir = ckpt_copy()
    cfg = json.loads((ck_dir / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (ck_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="bitsandbytes") as e:
        open_checkpoint(ck_dir)
    assert "gptq" in e.value.fix or "gptq" in e.value.problem  # names what is supported


def test_config_keys_transformers_ignores_are_noted(tmp_path):
    """R1-0528-Qwen3-8B's published YaRN key `attn_factor` is not read by transformers (it reads
    `attention_factor`): the checkpoint says so instead of the warning vanishing under dsedge's
    quiet logging."""
    import transformers

    from dsedge.reference.synthetic import write_checkpoint

    transformers.logging.set_verbosity_error()   # as a build sets it
    ck = open_checkpoint(write_checkpoint("r1-0528-qwen3-8b", tmp_path / "q3", layers=1, vocab=1024))
    ck.config
    assert len(ck.config_notes) == 1 and "attn_factor" in ck.config_notes[0]
    plain = open_checkpoint(reference.checkpoint_path("qwen3-tiny"))
    plain.config
    assert plain.config_notes == []


def test_a_stray_safetensors_file_is_not_mixed_in(ckpt_copy):
    """Without an index, transformers reads model.safetensors alone: so does dsedge (a stray file
    holding a tensor of the same name, with another shape, changes nothing)."""
    import torch
    from safetensors.torch import save_file

    from dsedge.load import open_checkpoint

    ck = ckpt_copy()
    save_file({"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 3)}, ck / "old-export.safetensors")
    c = open_checkpoint(ck)
    assert [f.name for f in c.weight_files] == ["model.safetensors"]
    c.validate()
    assert c.index["model.layers.0.mlp.up_proj.weight"].shape != (3, 3)
