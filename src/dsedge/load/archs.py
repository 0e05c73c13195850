"""Architecture knowledge as data, keyed by config.json's `architectures[0]`.

Every other stage (quantize, export, check, plan) reads this table; none re-derives
layer names. Adding a decoder with the same block structure is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ArchSpec:
    name: str                       # architectures[0]
    layers_prefix: str              # parameter prefix of decoder block i: f"{layers_prefix}.{i}."
    linears: tuple[str, ...]        # linear layers inside one block, relative to the block
    # which normalisation feeds which projections (SmoothQuant / AWQ fold their scales here)
    norm_to_linears: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # linears outside the blocks (quantized only when the method says so)
    head: str = "lm_head"
    embed: str = "model.embed_tokens"
    attention: str = "gqa"          # "gqa" (standard KV cache) | "mla" (compressed cache)
    qkv_bias: bool = False          # Qwen2 has q/k/v bias, Llama does not
    min_transformers: str = "4.45"

    def block_linears(self, n_layers: int) -> list[str]:
        """Fully qualified names of every linear in the decoder blocks, in execution order."""
        return [f"{self.layers_prefix}.{i}.{lin}" for i in range(n_layers) for lin in self.linears]


_DENSE_LINEARS = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
)
_DENSE_NORMS = {
    "input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj"),
}

ARCHITECTURES: dict[str, ArchSpec] = {
    # DeepSeek-R1-Distill-Qwen-1.5B / 7B / 14B / 32B
    "Qwen2ForCausalLM": ArchSpec(
        name="Qwen2ForCausalLM", layers_prefix="model.layers", linears=_DENSE_LINEARS,
        norm_to_linears=_DENSE_NORMS, qkv_bias=True,
    ),
    # DeepSeek-R1-Distill-Llama-8B / 70B, deepseek-llm, deepseek-coder
    "LlamaForCausalLM": ArchSpec(
        name="LlamaForCausalLM", layers_prefix="model.layers", linears=_DENSE_LINEARS,
        norm_to_linears=_DENSE_NORMS,
    ),
}

# Known but not yet supported: named in the error so users know it is planned, not unknown.
PLANNED = {"DeepseekV2ForCausalLM": "DeepSeek-V2 / V2-Lite (MLA + MoE)",
           "DeepseekV3ForCausalLM": "DeepSeek-V3 / R1 (MLA + MoE)"}


def arch_spec(architecture: str) -> ArchSpec:
    from ..errors import UnsupportedArchitectureError

    if architecture in ARCHITECTURES:
        return ARCHITECTURES[architecture]
    what = f" ({PLANNED[architecture]})" if architecture in PLANNED else ""
    raise UnsupportedArchitectureError(
        f"architecture {architecture}{what} is not supported yet",
        f"use a checkpoint of a supported architecture: {', '.join(sorted(ARCHITECTURES))}",
    )
