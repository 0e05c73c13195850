"""Random-weight checkpoints at the published shapes: every tensor transformers expects, with its
name and shape, reproducible, and the changes to the published configuration recorded."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from dsedge.archs import REGISTRY, published_config
from dsedge.reference.synthetic import synthetic_config, tensor_shapes, write_checkpoint

SHAPES = sorted(n for s in REGISTRY.values() if s.unsupported is None for n in s.real_shapes)


@pytest.mark.parametrize("name", SHAPES)
def test_cut_config_keeps_the_published_dimensions(name):
    pub = published_config(name)
    cfg, changes = synthetic_config(name, layers=2, experts=4)
    for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
              "rope_theta", "rope_scaling", "rms_norm_eps", "kv_lora_rank", "q_lora_rank", "moe_intermediate_size",
              "vocab_size", "max_position_embeddings", "tie_word_embeddings"):
        assert cfg.get(k) == pub.get(k), k
    assert cfg["num_hidden_layers"] == 2 and changes["num_hidden_layers"] == [pub["num_hidden_layers"], 2]
    shapes = tensor_shapes(cfg)
    assert shapes["model.embed_tokens.weight"] == (pub["vocab_size"], pub["hidden_size"])
    assert shapes["model.layers.1.mlp.down_proj.weight" if "n_routed_experts" not in pub
                  else "model.layers.1.mlp.experts.3.down_proj.weight"][0] == pub["hidden_size"]


def test_checkpoint_is_written_as_transformers_reads_it(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = write_checkpoint("deepseek-coder-1.3b", tmp_path / "a", layers=1, vocab=512, tie=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is True and cfg["vocab_size"] == 512
    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        emb = f.get_tensor("model.embed_tokens.weight")
    assert "lm_head.weight" not in keys and emb.dtype == torch.bfloat16 and emb.shape == (512, 2048)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)   # every tensor found, none extra
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    again = write_checkpoint("deepseek-coder-1.3b", tmp_path / "b", layers=1, vocab=512, tie=True)
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError):
        write_checkpoint("deepseek-coder-1.3b", out, layers=1, vocab=512)
