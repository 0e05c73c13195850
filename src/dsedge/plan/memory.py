"""Will a model fit on a target? Decided from config.json alone (no weights).

total = weights (as stored at the chosen precision) + KV cache + activation workspace + runtime.

- Weights: every tensor the checkpoint stores, all MoE experts included. Decoder linears are
  stored at the method's precision (INT4 g128: packed 4-bit codes + one FP16 scale per 128 input
  channels per output; INT8: codes + one FP16 scale per output channel); embeddings, lm_head
  (unless the method quantizes it), norms, biases and MoE routers stay FP16.
- KV cache, FP16: layers x KV heads x head dim x context x batch x 2 (K and V) x 2 bytes; for MLA
  (multi-head latent attention) the compressed cache: layers x (kv_lora_rank + qk_rope_head_dim) x context x
  batch x 2 bytes.
- Activation workspace, FP16, for the prefill profile's longest prompt P = min(max_prompt, context):
  batch x P x 2 bytes x (2 x hidden + max(attention projection width, 2 x active MLP width) + vocab):
  the residual stream and its normalised copy, the widest intermediate of one layer, and the
  logits of every prompt position (the exported graph returns them all). Attention scores are
  not counted: TensorRT fuses attention (no P x P matrix).
- Runtime: the target's `memory.runtime_overhead_gb` (CUDA context, TensorRT / cuBLAS kernels,
  and on Jetson the host process, which shares the same memory).
Memory sizes are GiB (2^30 bytes), like the target's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..archs import ArchSpec, arch_for
from ..errors import CheckpointError
from ..quantize.configs import Fp16Config, QuantConfig
from ..targets.schema import Target

GiB = 1 << 30
KV_BYTES = {"fp16": 2, "int8": 1}   # per cached value (--kv-cache; INT8's per-channel scales: a few KB)
ACT_BYTES = 2    # FP16 activations


@dataclass(frozen=True)
class Tensors:
    """`count` stored matrices of in_features x out_features (vectors: in_features = 1), of which
    `active` are read for one decoded token at batch 1."""
    part: str
    in_features: int
    out_features: int
    count: int
    active: int
    linear: bool                   # a decoder linear: stored at the method's precision

    @property
    def params(self) -> int:
        return self.in_features * self.out_features * self.count


def _get(config: dict, key: str, default=...):
    v = config.get(key, default)
    if v is ...:
        raise CheckpointError(f"config.json has no {key!r}", "use the checkpoint's own config.json")
    return v


def _attention(c: dict, s: ArchSpec, H: int, L: int, nh: int) -> list[Tensors]:
    if s.attention == "gqa":
        hd = c.get("head_dim") or H // nh
        kv = _get(c, "num_key_value_heads", nh)
        out = [Tensors("attention", H, nh * hd, L, L, True), Tensors("attention", H, kv * hd, 2 * L, 2 * L, True),
               Tensors("attention", nh * hd, H, L, L, True)]
        if s.qkv_bias:
            out.append(Tensors("norms+biases", 1, nh * hd + 2 * kv * hd, L, L, False))
        if s.qk_norm:
            out.append(Tensors("norms+biases", 1, 2 * hd, L, L, False))
        return out
    nope, rope, vd = _get(c, "qk_nope_head_dim"), _get(c, "qk_rope_head_dim"), _get(c, "v_head_dim")
    kvr, qr = _get(c, "kv_lora_rank"), c.get("q_lora_rank")
    if qr:
        q = [Tensors("attention", H, qr, L, L, True), Tensors("attention", qr, nh * (nope + rope), L, L, True),
             Tensors("norms+biases", 1, qr, L, L, False)]
    else:
        q = [Tensors("attention", H, nh * (nope + rope), L, L, True)]
    return q + [Tensors("attention", H, kvr + rope, L, L, True), Tensors("norms+biases", 1, kvr, L, L, False),
                # kv_b_proj: FP16 in the absorbed-MLA export (ArchSpec.fp16_linears says why)
                Tensors("attention", kvr, nh * (nope + vd), L, L, False), Tensors("attention", nh * vd, H, L, L, True)]


def _mlp(c: dict, s: ArchSpec, H: int, L: int) -> list[Tensors]:
    m = s.moe
    n_moe = m.moe_layers(c, L) if m else 0
    dense, inter = L - n_moe, _get(c, "intermediate_size")
    out = [Tensors("mlp", H, inter, 2 * dense, 2 * dense, True), Tensors("mlp", inter, H, dense, dense, True)] if dense else []
    if n_moe:
        mi, ne, k, ns = (_get(c, m.intermediate_key), _get(c, m.n_experts_key), _get(c, m.top_k_key),
                         c.get(m.shared_key) or 0)
        out += [Tensors("experts", H, mi, 2 * ne * n_moe, 2 * k * n_moe, True),
                Tensors("experts", mi, H, ne * n_moe, k * n_moe, True),
                Tensors("experts", H, ne, n_moe, n_moe, False)]          # router, FP16
        if ns:
            out += [Tensors("experts", H, mi * ns, 2 * n_moe, 2 * n_moe, True),
                    Tensors("experts", mi * ns, H, n_moe, n_moe, True)]
        if m.router_bias:
            out.append(Tensors("experts", 1, ne, n_moe, n_moe, False))
    return out


def model_tensors(config: dict) -> list[Tensors]:
    """Every stored tensor of the model, grouped by shape (a multi-token-prediction
    layer is not counted: it is not used for generation)."""
    s = arch_for(config, plan_only=True)
    H, L = _get(config, "hidden_size"), _get(config, "num_hidden_layers")
    V, nh = _get(config, "vocab_size"), _get(config, "num_attention_heads")
    tied = bool(config.get("tie_word_embeddings", False))
    out = [Tensors("embeddings", H, V, 1, 1 if tied else 0, False)]   # a lookup reads one row; tied: it is the head
    out += _attention(config, s, H, L, nh) + _mlp(config, s, H, L)
    out.append(Tensors("norms+biases", 1, H, 2 * L + 1, 2 * L + 1, False))
    if not tied:
        out.append(Tensors("lm_head", H, V, 1, 1, False))
    return out


def tensor_bytes(t: Tensors, q: QuantConfig, n: int | None = None) -> int:
    """Bytes of n (default: all stored) matrices of t at config q's storage of them: the scheme
    q gives a linear of t's in_features (QuantConfig.scheme_for: its group, or the fallback the
    build takes where the group does not divide)."""
    n = t.count if n is None else n
    head = t.part == "lm_head" and getattr(q, "quantize_lm_head", False)
    if not (t.linear or head) or q.bits >= 16:
        return 2 * t.in_features * t.out_features * n
    s = q.scheme_for(t.in_features)
    g = s.group_size
    groups = t.out_features * (math.ceil(t.in_features / g) if g > 0 else 1)
    zero = 0 if q.symmetric else groups * s.bits // 8
    return n * (math.ceil(t.in_features * t.out_features * s.bits / 8) + 2 * groups + zero)


@dataclass(frozen=True)
class MemoryPlan:
    architecture: str
    target: str
    method: str
    bits: int
    context: int
    batch: int
    prompt: int
    params: int
    weight_parts: dict[str, int]       # bytes stored, by part
    weight_read_bytes: int             # weights read per decoded token (batch 1)
    kv_bytes: int
    kv_formula: str
    workspace_bytes: int
    workspace_formula: str
    overhead_bytes: int
    usable_bytes: int
    active_params: int = 0             # matmul params used per token (MoE: routed top-k + shared)
    notes: list[str] = field(default_factory=list)
    kv_cache: str = "fp16"             # the cache's dtype (--kv-cache)
    part_how: dict[str, str] = field(default_factory=dict)   # how a part is stored, where not the method / FP16 (fit)

    @property
    def weight_bytes(self) -> int:
        return sum(self.weight_parts.values())

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + self.workspace_bytes + self.overhead_bytes

    @property
    def margin_bytes(self) -> int:
        return self.usable_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.margin_bytes >= 0

    def to_dict(self) -> dict:
        g = lambda b: round(b / GiB, 3)
        return {"architecture": self.architecture, "target": self.target, "method": self.method, "bits": self.bits,
                "context": self.context, "batch": self.batch, "prompt": self.prompt, "params": self.params,
                "active_params": self.active_params, "weight_read_per_token_bytes": self.weight_read_bytes,
                "kv_cache_dtype": self.kv_cache, "kv_bytes_per_token": self.kv_bytes // max(1, self.context * self.batch),
                "weights_gib": g(self.weight_bytes), "weights_by_part_gib": {k: g(v) for k, v in self.weight_parts.items()},
                "kv_cache_gib": g(self.kv_bytes), "workspace_gib": g(self.workspace_bytes),
                "runtime_gib": g(self.overhead_bytes), "total_gib": g(self.total_bytes),
                "usable_gib": g(self.usable_bytes), "margin_gib": g(self.margin_bytes), "fits": self.fits,
                "formulas": {"kv_cache": self.kv_formula, "workspace": self.workspace_formula}, "notes": self.notes}

    def rows(self) -> list[tuple[str, str, str]]:
        """(item, GiB, how) for a rich table."""
        g = lambda b: f"{b / GiB:.2f}"
        r = [(f"weights: {k}", g(v), self.part_how.get(k) or (
              f"{self.method}" if k in ("attention", "mlp", "experts") else "FP16"))
             for k, v in self.weight_parts.items() if v]
        r += [("weights", g(self.weight_bytes), f"{self.params / 1e9:.2f} B params"),
              ("read per token", g(self.weight_read_bytes),
               f"weights a decoded token reads: {self.active_params / 1e9:.2f} B active matmul params"
               + (" (routed top-k + shared experts)" if self.weight_parts.get("experts") else
                  " (every linear + the LM head; the embedding is a lookup)")),
              ("KV cache", g(self.kv_bytes), self.kv_formula),
              ("workspace", g(self.workspace_bytes), self.workspace_formula),
              ("runtime", g(self.overhead_bytes), "target memory.runtime_overhead_gb"),
              ("total", g(self.total_bytes), f"batch {self.batch}, context {self.context}"),
              ("usable", g(self.usable_bytes), f"{self.target} memory.usable_gb"),
              ("margin", g(self.margin_bytes), "fits" if self.fits else "does NOT fit")]
        return r


def kv_cache_bytes(config: dict, context: int, batch: int, kv_cache: str = "fp16") -> tuple[int, str]:
    s = arch_for(config, plan_only=True)
    L = _get(config, "num_hidden_layers")
    (_, k_heads, k_dim), (_, v_heads, v_dim) = s.cache_layout(config)
    b = KV_BYTES[kv_cache]
    per_token = L * (k_heads * k_dim + v_heads * v_dim) * b
    if s.attention == "mla":   # one latent + one shared rotary key per layer
        how = (f"{L} layers x {k_dim + v_dim} (kv_lora_rank + rope dim) x {b} B = {per_token:,} B per token, "
               f"x {context} x {batch}")
    else:
        how = f"{L} layers x {k_heads} KV heads x {k_dim} x {context} x {batch} x 2 (K,V) x {b} B"
    return per_token * context * batch, how + (" (INT8 cache)" if kv_cache == "int8" else "")


def workspace_bytes(config: dict, prompt: int, batch: int) -> tuple[int, str]:
    s = arch_for(config, plan_only=True)
    H, V, nh = _get(config, "hidden_size"), _get(config, "vocab_size"), _get(config, "num_attention_heads")
    if s.attention == "mla":
        nope, rope, vd = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
        attn = nh * (nope + rope) + config["kv_lora_rank"] + rope + nh * (nope + vd)
    else:
        hd, kv = config.get("head_dim") or H // nh, config.get("num_key_value_heads", nh)
        attn = nh * hd + 2 * kv * hd
    L = _get(config, "num_hidden_layers")
    m = s.moe
    n_moe = m.moe_layers(config, L) if m else 0
    mlp = _get(config, "intermediate_size") if n_moe < L else 0
    if n_moe:
        mlp = max(mlp, (config[m.top_k_key] + (config.get(m.shared_key) or 0)) * config[m.intermediate_key])
    width = 2 * H + max(attn, 2 * mlp) + V
    return (batch * prompt * ACT_BYTES * width,
            f"{batch} x {prompt} prompt x 2 B x (2x{H} + max({attn}, 2x{mlp}) + {V} logits)")


def plan_memory(config: dict, target: Target, quant: QuantConfig | None = None, context: int | None = None,
                batch: int | None = None, kv_cache: str = "fp16") -> MemoryPlan:
    """Memory of a build of this config with `quant` (None: FP16) on `target` at `context` x
    `batch` (defaults: the target's profile). `quant` is the build's own config object: its group
    size and zero points are what the weights are counted at."""
    positions = int(config.get("max_position_embeddings") or 0) or None
    if context is None:   # the target's, unless the model has fewer positions
        context = min(target.profile.max_context, positions or target.profile.max_context)
    batch = target.profile.max_batch if batch is None else batch
    if context < 1 or batch < 1:
        raise CheckpointError(f"context {context} and batch {batch} must be positive", "use e.g. --context 4096 --batch 1")
    q = quant or Fp16Config()
    spec = arch_for(config, plan_only=True)
    tensors = model_tensors(config)
    parts: dict[str, int] = {}
    for t in tensors:
        parts[t.part] = parts.get(t.part, 0) + tensor_bytes(t, q)
    read = sum(tensor_bytes(t, q, t.active) for t in tensors)
    if getattr(q, "stored", ()):   # a fitted mix (--fit) counted its own units by name: its stored bytes
        parts = dict(q.stored)
        lookup = 0 if config.get("tie_word_embeddings") else parts.get("embeddings", 0)
        read = sum(parts.values()) - lookup      # dense (fit takes no MoE): a token reads every other weight
    active = sum(t.in_features * t.out_features * t.active for t in tensors if t.in_features > 1)
    kv, kv_f = kv_cache_bytes(config, context, batch, kv_cache)
    prompt = min(target.profile.max_prompt, context)
    ws, ws_f = workspace_bytes(config, prompt, batch)
    notes = [note for key, note in spec.plan_notes.items() if config.get(key)]
    if positions and context > positions:
        notes.append(f"context {context} is beyond the model's {positions} positions (max_position_embeddings)")
    return MemoryPlan(spec.name, target.name, q.label(), q.bits, context, batch, prompt,
                      sum(t.params for t in tensors), parts, read, kv, kv_f, ws, ws_f,
                      int(target.memory.runtime_overhead_gb * GiB), int(target.memory.usable_gb * GiB), active, notes,
                      kv_cache)


# option -> (method, bits, the target precision it needs)
OPTIONS: dict[str, tuple[str, int, str]] = {
    "fp16": ("fp16", 16, "fp16"),
    "int8": ("int8", 8, "int8"),
    "int4": ("rtn", 4, "int4_weight_only"),
}


@dataclass(frozen=True)
class Option:
    precision: str
    method: str
    bits: int
    supported: bool                # the target (GPU + its TensorRT) runs this precision
    plan: MemoryPlan

    @property
    def fits(self) -> bool:
        return self.supported and self.plan.fits

    def to_dict(self) -> dict:
        return {"precision": self.precision, "method": self.method, "bits": self.bits, "supported": self.supported,
                "total_gib": round(self.plan.total_bytes / GiB, 3), "margin_gib": round(self.plan.margin_bytes / GiB, 3),
                "fits": self.fits}


def options(config: dict, target: Target, context: int | None = None, batch: int | None = None,
            kv_cache: str = "fp16") -> list[Option]:
    """Which of fp16 / int8 / int4 fit this target at context x batch (with that KV cache)."""
    from ..quantize.methods import config_from_options

    return [Option(p, m, b, need in target.precisions,
                   plan_memory(config, target, config_from_options(m, b), context, batch, kv_cache))
            for p, (m, b, need) in OPTIONS.items()]
