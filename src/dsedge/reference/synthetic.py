"""Random-weight checkpoints at the real shapes of published DeepSeek checkpoints.

The published config.json (dsedge/archs/configs/<name>.json) is kept as it is: dimensions, rope
settings, norms, biases, MoE layout. The checkpoint is cut to a few layers (and, when asked, fewer
routed experts or a smaller vocabulary); every tensor has the name and shape transformers gives it
(MoE experts as the per-expert 2-D linears of DeepSeek's files; no lm_head.weight when the
embeddings are tied), drawn from a generator seeded by the tensor's name (the same bytes on every
machine), in BF16, written as sharded safetensors with an index. The published tokenizers are not
shipped: the family's tiny reference tokenizer is written instead (the pipeline only tokenizes eval
text with it), so the special-token ids in config.json are set to that tokenizer's; synthetic.json
records every change made to the published configuration.

    python -m dsedge.reference.synthetic r1-distill-qwen-7b --layers 2 --out DIR [--experts 16] [--vocab 8192]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

from ..archs import CONFIGS, arch_for, published_config

_DTYPE_BYTES = 2   # BF16

# The turn structure of DeepSeek-R1's chat template (tokenizer_config.json of the R1 distills):
# BOS, system text, "<｜User｜>" turns, "<｜Assistant｜>" turns closed by EOS, and a generation
# prompt that opens the reasoning block, "<｜Assistant｜><think>\n". Reduced: no tool calls, and the
# markers are plain text to the tiny tokenizer (special tokens in the real one).
R1_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<｜Assistant｜>{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}")


def synthetic_config(name: str, layers: int | None = 2, experts: int | None = None, vocab: int | None = None,
                     tie: bool | None = None) -> tuple[dict, dict]:
    """(config.json of the cut checkpoint, the changes made to the published one). tie: set
    tie_word_embeddings (the Hugging Face layout without lm_head.weight)."""
    from .tiny import BOS, EOS, PAD

    cfg = {k: v for k, v in published_config(name).items() if not k.startswith("_")}
    spec = arch_for(cfg)
    changes: dict = {"published": name, "seed": "sha256 of each tensor's name"}
    if layers is not None and layers < cfg["num_hidden_layers"]:
        changes["num_hidden_layers"] = [cfg["num_hidden_layers"], layers]
        cfg["num_hidden_layers"] = layers
        if "max_window_layers" in cfg:
            cfg["max_window_layers"] = min(cfg["max_window_layers"], layers)
    m = spec.moe
    if m is not None and experts is not None and experts < cfg[m.n_experts_key]:
        changes[m.n_experts_key] = [cfg[m.n_experts_key], experts]
        cfg[m.n_experts_key] = experts
        cfg[m.top_k_key] = min(cfg[m.top_k_key], experts)
        if experts % int(cfg.get("n_group") or 1):   # group-limited routing needs whole groups
            changes["n_group"] = [cfg.get("n_group"), 1]
            cfg["n_group"], cfg["topk_group"] = 1, 1
    if vocab is not None and vocab < cfg["vocab_size"]:
        changes["vocab_size"] = [cfg["vocab_size"], vocab]
        cfg["vocab_size"] = vocab
    if tie is not None and bool(cfg.get("tie_word_embeddings")) != tie:
        changes["tie_word_embeddings"] = [cfg.get("tie_word_embeddings"), tie]
        cfg["tie_word_embeddings"] = tie
    for key, new in (("bos_token_id", BOS), ("eos_token_id", EOS), ("pad_token_id", PAD)):
        if cfg.get(key) != new:
            changes[key] = [cfg.get(key), new]
            cfg[key] = new
    return cfg, changes


def tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor the checkpoint stores, in transformers' order, with DeepSeek's on-disk expert names."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = arch_for(cfg)
    config = AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k != "model_type"})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = {}
    for k, v in model.state_dict().items():
        if tied and k == f"{spec.head}.weight":
            continue
        parts = spec.moe.unfuse(k, tuple(v.shape)) if spec.moe is not None else None
        out.update(parts if parts is not None else {k: tuple(v.shape)})
    return out


def _tensor(name: str, shape: tuple[int, ...]):
    """Seeded by the name. Norm weights 1; biases and score corrections small; matrices N(0, 1/fan_in)
    (activations stay O(1) through the layers), the embedding N(0, 0.02)."""
    import torch

    g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))
    if len(shape) == 1:
        if "norm" in name:
            return torch.ones(shape, dtype=torch.bfloat16)
        return (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
    std = 0.02 if "embed" in name else 1 / math.sqrt(shape[-1])
    return (torch.randn(shape, generator=g) * std).to(torch.bfloat16)


def write_checkpoint(name: str, out: Path, layers: int | None = 2, experts: int | None = None,
                     vocab: int | None = None, tie: bool | None = None, shard_bytes: int = 2 << 30) -> Path:
    """Write the cut, random-weight checkpoint of published configuration `name` into `out` (a new
    folder). -> out."""
    from safetensors.torch import save_file

    from .tiny import build_tokenizer, save_tokenizer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    cfg, changes = synthetic_config(name, layers, experts, vocab, tie)
    shapes = tensor_shapes(cfg)
    shards, size = [[]], 0
    for k, s in shapes.items():           # plan the shards first: their names carry the count
        b = math.prod(s) * _DTYPE_BYTES
        if shards[-1] and size + b > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(k)
        size += b
    weight_map = {}
    for i, keys in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: _tensor(k, shapes[k]) for k in keys}, str(out / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in keys})
    if len(shards) > 1:
        total = sum(math.prod(s) * _DTYPE_BYTES for s in shapes.values())
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1) + "\n")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    family = arch_for(cfg).family
    tok = build_tokenizer(family)
    assert tok.get_vocab_size() <= cfg["vocab_size"], "the tiny tokenizer must fit the vocabulary"
    save_tokenizer(tok, family, out)
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    tok_cfg["chat_template"] = R1_CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n")
    changes["chat_template"] = "DeepSeek-R1's turn structure, reduced (synthetic.R1_CHAT_TEMPLATE)"
    (out / "synthetic.json").write_text(json.dumps(changes, indent=2) + "\n")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=sorted(p.stem for p in CONFIGS.glob("*.json")))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=2, help="decoder layers to keep (0: all)")
    ap.add_argument("--experts", type=int, default=None, help="routed experts to keep (MoE)")
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary to keep (default: the published one)")
    ap.add_argument("--tie-embeddings", action="store_true", help="tied embeddings: no lm_head.weight")
    a = ap.parse_args(argv)
    print(write_checkpoint(a.name, a.out, a.layers or None, a.experts, a.vocab, True if a.tie_embeddings else None))


if __name__ == "__main__":
    main()
