"""What dsedge knows about a decoder family, as data: `ArchSpec` (one per family, in
archs/<family>.py) and `MoeSpec` (its mixture-of-experts blocks, when it has them).

Nothing here imports torch or transformers: `dsedge plan` reads these tables from config.json
alone. The attention kinds ("gqa": per-head K/V cache; "mla": multi-head latent attention's
compressed cache) are the only branches the other stages take on a family's shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

ALL_METHODS = ("fp16", "int8", "rtn", "gptq", "awq", "smoothquant", "fit")   # fit: --fit (dsedge/fit/)
ALL_BACKENDS = ("llmcompressor", "gptqmodel")


@dataclass(frozen=True)
class Smoothing:
    """One smoothing mapping (AWQ / SmoothQuant): the output of `smooth` (a norm, or a linear) is
    divided by per-channel scales that the `balance` linears reading it multiply back in.
    Patterns are llm-compressor's ("re:" + a regex over module names)."""
    smooth: str
    balance: tuple[str, ...]


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
    # The router stays in float: it is E x H (0.03 % of V2-Lite's weights), its logits pick the
    # experts through a discrete top-k, and a rounding that flips one choice changes the token's
    # whole expert output, not a small perturbation of it. transformers computes it in fp32.
    router: str = "mlp.gate"                        # relative to the block
    router_norm: str = "post_attention_layernorm"   # the norm whose output the router reads
    router_bias: bool = False                       # a per-expert score correction bias (V3)
    n_experts_key: str = "n_routed_experts"
    top_k_key: str = "num_experts_per_tok"
    intermediate_key: str = "moe_intermediate_size"
    shared_key: str = "n_shared_experts"
    dense_layers_key: str = "first_k_dense_replace"  # layers [0, k) keep a dense MLP
    freq_key: str = "moe_layer_freq"                 # then every freq-th layer is MoE

    def is_moe_layer(self, cfg: dict, i: int) -> bool:
        first, freq = int(cfg.get(self.dense_layers_key) or 0), int(cfg.get(self.freq_key) or 1)
        return i >= first and i % freq == 0

    def moe_layers(self, cfg: dict, n_layers: int) -> int:
        return sum(self.is_moe_layer(cfg, i) for i in range(n_layers))

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
class Reference:
    """The family's tiny reference checkpoint (src/dsedge/reference/checkpoints/<name>), trained by
    reference/train.py: its tokenizer kind and the config.json values that make it tiny."""
    name: str
    tokenizer: str                 # "bpe" (byte-level) | "wordlevel" (whitespace words)
    config: dict
    # the class tokenizer_config.json names (the one transformers loads the family's folders with)
    tokenizer_class: str = "PreTrainedTokenizerFast"
    split: str | None = None       # "bpe": the pre-tokenizer's split regex (the tokenizer class's own)


@dataclass(frozen=True)
class ArchSpec:
    name: str                       # config.json's architectures[0]
    model_type: str                 # config.json's model_type (transformers' AutoConfig key)
    layers_prefix: str              # parameter prefix of decoder block i: f"{layers_prefix}.{i}."
    linears: tuple[str, ...]        # quantized linears inside one (dense) block, relative to the block
    attention: str = "gqa"          # "gqa" (per-head K/V cache) | "mla" (compressed latent cache)
    head: str = "lm_head"           # quantized only when the method says so (quantize_lm_head)
    embed: str = "model.embed_tokens"  # the head's weight when the embeddings are tied and no head is stored
    qkv_bias: bool = False          # q/k/v projections carry a bias (planner: stored FP16)
    qk_norm: bool = False           # per-head RMSNorm on queries and keys (q_norm / k_norm; planner: FP16)
    moe: MoeSpec | None = None      # MoE layers replace the dense MLP linears (`linears`' "mlp.*")
    moe_linears: tuple[str, ...] = ()  # non-expert linears of an MoE block (attention)
    # linears that are never quantized, and why (the planner counts them at FP16)
    fp16_linears: dict[str, str] = field(default_factory=dict)
    # smoothing mappings handed to llm-compressor as data (AWQModifier / SmoothQuantModifier)
    awq_mappings: tuple[Smoothing, ...] = ()
    smoothquant_mappings: tuple[Smoothing, ...] = ()
    # the modules of a block GPTQ calibrates one after the other (true_sequential)
    sequential: tuple[str, ...] = ("self_attn", "mlp")
    methods: tuple[str, ...] = ALL_METHODS
    backends: tuple[str, ...] = ALL_BACKENDS    # of the calibrated methods
    min_transformers: str = "4.45"  # the first transformers that has the model class dsedge uses
    # export: a function swapping in export forms on the meta-device model (None: transformers'
    # modules export as they are), named "module:function" so archs/ imports no torch; and a
    # version string of those forms (part of the trace cache key)
    export_patch: str | None = None
    export_form: str | None = None
    # config.json keys the planner does not count, with the note it prints when one is set
    plan_notes: dict[str, str] = field(default_factory=dict)
    reference: Reference | None = None
    # the real-text reference (reference/text.py; one family has it): its config holds the values
    # over `reference`'s, its tokenizer is learned on that text
    text_reference: Reference | None = None
    # published checkpoints of this layout (hub ids) whose config.json ships in archs/configs/
    real_shapes: tuple[str, ...] = ()
    # None: dsedge builds it; else why not yet (the planner still covers it)
    unsupported: str | None = None

    @property
    def family(self) -> str:
        return self.model_type

    def block_linears(self, n_layers: int, cfg: dict | None = None) -> list[str]:
        """Fully qualified names of every quantized linear in the decoder blocks, in execution
        order. MoE architectures need config.json (`cfg`) to know which layers hold how many experts."""
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

    def layer_kind(self, cfg: dict, i: int) -> tuple:
        """What makes decoder layer i's graph differ from another's besides its weights: an MoE
        block or a dense one, and its attention type (config.json's `layer_types`: sliding
        window or full). Layers of one kind export to one graph (export/assemble.py)."""
        types = cfg.get("layer_types") or ()
        return (self.moe is not None and self.moe.is_moe_layer(cfg, i), types[i] if i < len(types) else None)

    def cache_layout(self, cfg) -> tuple[tuple[str, int, int], ...]:
        """(kind, heads, last dim) of the two cache tensors of one layer. `cfg`: a transformers
        config (attributes) or config.json (a dict)."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        if self.attention == "mla":   # the normalised latent and the rotated key shared by all heads
            return (("compressed_kv", 1, int(get("kv_lora_rank"))), ("k_rope", 1, int(get("qk_rope_head_dim"))))
        nh = int(get("num_attention_heads"))
        head_dim = int(get("head_dim", None) or int(get("hidden_size")) // nh)
        kv = int(get("num_key_value_heads", None) or nh)
        return (("key", kv, head_dim), ("value", kv, head_dim))

    def load_export_patch(self) -> Callable | None:
        if self.export_patch is None:
            return None
        import importlib

        module, fn = self.export_patch.split(":")
        return getattr(importlib.import_module(module), fn)


_Q_LORA = ("self_attn.q_a_proj", "self_attn.q_b_proj")

# The linears, norms and smoothing mappings shared by the Llama-shaped families
DENSE_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# llm-compressor 0.14's default AWQ mappings (modifiers/transform/awq/mappings.py default_mappings);
# v_proj -> o_proj is skipped by the library when the shapes differ (GQA)
DENSE_AWQ = (
    Smoothing("re:.*input_layernorm$", ("re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$")),
    Smoothing("re:.*v_proj$", ("re:.*o_proj$",)),
    Smoothing("re:.*post_attention_layernorm$", ("re:.*gate_proj$", "re:.*up_proj$")),
    Smoothing("re:.*up_proj$", ("re:.*down_proj$",)),
)
# llm-compressor 0.14's DEFAULT_SMOOTHQUANT_MAPPINGS: each norm into the projections reading it
DENSE_SMOOTHQUANT = (
    Smoothing("re:.*input_layernorm", ("re:.*q_proj", "re:.*k_proj", "re:.*v_proj")),
    Smoothing("re:.*post_attention_layernorm", ("re:.*gate_proj", "re:.*up_proj")),
)
# the tiny references' shared settings (reference/train.py adds vocabulary and special tokens)
TINY_DENSE = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2, max_position_embeddings=512,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                  tie_word_embeddings=False, rms_norm_eps=1e-6)
