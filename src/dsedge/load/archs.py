"""Architecture knowledge as data, keyed by config.json's `architectures[0]`.

Every other stage (quantize, export, check, plan) reads this table; none re-derives
layer names. Adding a decoder with the same block structure is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MoeSpec:
    """Mixture-of-experts blocks: which layers, how many experts, and the two layouts of their
    weights. On disk (DeepSeek's checkpoints, and what transformers 5 saves) every expert is three
    2-D linears, `{experts}.{e}.gate_proj.weight`, ...; in memory transformers 5 fuses them into
    3-D parameters, `{experts}.gate_up_proj` (E, 2I, H) = [gate; up] and `{experts}.down_proj`
    (E, H, I). dsedge quantizes and exports the on-disk 2-D linears (each expert is its own
    INT4/INT8 weight), and maps them onto the fused parameters when it runs PyTorch."""
    experts: str = "mlp.experts"                    # relative to the block
    expert_linears: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")
    fused: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)})
    shared: tuple[str, ...] = ("mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj",
                               "mlp.shared_experts.down_proj")
    # The router (`mlp.gate`, not a linear listed here) stays in float: it is E x H (0.03 % of
    # V2-Lite's weights), its logits pick the experts through a discrete top-k, and a rounding that
    # flips one choice changes the token's whole expert output, not a small perturbation of it.
    # transformers computes it in fp32.
    n_experts_key: str = "n_routed_experts"
    top_k_key: str = "num_experts_per_tok"
    dense_layers_key: str = "first_k_dense_replace"  # layers [0, k) keep a dense MLP

    def is_moe_layer(self, cfg: dict, i: int) -> bool:
        return i >= int(cfg.get(self.dense_layers_key) or 0)

    def expert_names(self, cfg: dict, i: int, prefix: str) -> list[str]:
        return [f"{prefix}.{i}.{self.experts}.{e}.{lin}"
                for e in range(int(cfg[self.n_experts_key])) for lin in self.expert_linears]

    def unfuse(self, name: str, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]] | None:
        """A fused in-memory parameter (`...experts.gate_up_proj`, (E, 2I, H)) -> its on-disk 2-D
        tensors and their shapes; None for any other name."""
        head, sep, fused = name.rpartition(f"{self.experts}.")
        if not sep or fused not in self.fused:
            return None
        parts = self.fused[fused]
        rows = shape[1] // len(parts)
        return [(f"{head}{self.experts}.{e}.{lin}.weight", (rows, shape[2]))
                for e in range(shape[0]) for lin in parts]

    def fused_slice(self, name: str) -> tuple[str, int, int, int] | None:
        """An on-disk expert linear `...experts.{e}.up_proj` -> (fused parameter, expert, part,
        parts): its rows in transformers' 3-D parameter are part k of `parts` equal chunks of
        [expert]; None for any other name."""
        head, sep, tail = name.rpartition(f"{self.experts}.")
        if not sep or tail.count(".") != 1:
            return None
        e, lin = tail.split(".")
        for fused, parts in self.fused.items():
            if lin in parts and e.isdigit():
                return f"{head}{self.experts}.{fused}", int(e), parts.index(lin), len(parts)
        return None


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
    moe: MoeSpec | None = None      # MoE layers replace the dense MLP linears (`linears`' "mlp.*")
    moe_linears: tuple[str, ...] = ()  # non-expert linears of an MoE block (attention)

    def block_linears(self, n_layers: int, cfg: dict | None = None) -> list[str]:
        """Fully qualified names of every linear in the decoder blocks, in execution order.
        MoE architectures need config.json (`cfg`) to know which layers hold how many experts."""
        out = []
        q_lora = self.attention == "mla" and cfg is not None and cfg.get("q_lora_rank")
        for i in range(n_layers):
            moe = self.moe is not None and cfg is not None and self.moe.is_moe_layer(cfg, i)
            for lin in (self.moe_linears + self.moe.shared) if moe else self.linears:
                # q_lora_rank set (V2, V3): q_a_proj -> q_a_layernorm -> q_b_proj replace q_proj
                for part in _Q_LORA if q_lora and lin == "self_attn.q_proj" else (lin,):
                    out.append(f"{self.layers_prefix}.{i}.{part}")
            if moe:
                out += self.moe.expert_names(cfg, i, self.layers_prefix)
        return out


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

_Q_LORA = ("self_attn.q_a_proj", "self_attn.q_b_proj")
# q_proj without query compression (V2-Lite), q_a_proj/q_b_proj with it (V2, V3). kv_b_proj stays
# FP16: the exported (absorbed) MLA splits it per head into W_uk (H, dn, r) and W_uv (H, dv, r)
# that multiply the query and the attention output as batched 3-D MatMuls. Its per-output-channel
# scales would then run along two axes (head, row), which DequantizeLinear's 1-D per-axis scale
# cannot express, and TensorRT takes blocked scales for INT4 only. It is r x H(dn + dv) per layer:
# 0.36 % of V2-Lite's weights (57 M of 15.7 B), read once per token whatever the context length.
_MLA_LINEARS = ("self_attn.q_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.o_proj")
ARCHITECTURES["DeepseekV2ForCausalLM"] = ArchSpec(
    # DeepSeek-V2-Lite / DeepSeek-Coder-V2-Lite (and V2 with q_lora_rank set)
    name="DeepseekV2ForCausalLM", layers_prefix="model.layers",
    linears=_MLA_LINEARS + ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
    moe_linears=_MLA_LINEARS, moe=MoeSpec(), attention="mla", min_transformers="5.0",
    norm_to_linears={"input_layernorm": ("self_attn.q_proj", "self_attn.kv_a_proj_with_mqa"),
                     "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj")},  # dense layers
)

# Known but not yet supported: named in the error so users know it is planned, not unknown.
PLANNED = {"DeepseekV3ForCausalLM": "DeepSeek-V3 / R1 (MLA + MoE with sigmoid routing)"}


def arch_spec(architecture: str) -> ArchSpec:
    from ..errors import UnsupportedArchitectureError

    if architecture in ARCHITECTURES:
        return ARCHITECTURES[architecture]
    what = f" ({PLANNED[architecture]})" if architecture in PLANNED else ""
    raise UnsupportedArchitectureError(
        f"architecture {architecture}{what} is not supported yet",
        f"use a checkpoint of a supported architecture: {', '.join(sorted(ARCHITECTURES))}",
    )
