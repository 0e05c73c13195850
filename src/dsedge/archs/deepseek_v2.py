"""DeepSeek-V2 layout: DeepSeek-V2-Lite / DeepSeek-Coder-V2-Lite (and V2 with q_lora_rank set).
Multi-head latent attention (MLA) + mixture of experts (routed top-k + shared experts), the first
`first_k_dense_replace` layers dense.

Export forms. transformers' modules do not export as they are: the rotary embedding is
complex-valued, the experts run a data-dependent Python loop over fused 3-D parameters, and MLA
re-expands the whole compressed cache through kv_b_proj at every step. `prepare(model)` swaps, on
the meta-device model that is traced (never on a model that holds weights), three forwards for
export forms with the same parameters and the same arithmetic:

* Rotary embedding: real (cos, sin) instead of complex `freqs_cis`; the interleaved-pair rotation
  is written out (x0 cos - x1 sin, x0 sin + x1 cos).

* Attention, absorbed MLA (DeepSeek-V2 paper, section 2.1.3). The cache holds the normalised
  latent c (B, 1, S, r) and the rotated shared key k_rope (B, 1, S, dr): transformers' own cache
  layout. kv_b_proj (H*(dn+dv), r) is split per head into W_uk (H, dn, r) and W_uv (H, dv, r) and
  folded into the query and the output instead of decompressing the cache:
      scores = (q_nope W_uk) c^T + q_rope k_rope^T        (B, H, T, S)
      out    = (softmax(scores) c) W_uv^T                  (B, H, T, dv)
  Why this form: decompression costs 2 * S * r * H * (dn + dv) FLOPs and an (S, H, dn+dv)
  temporary per layer and token; absorbed, a decoded token's attention reads only the S x (r + dr)
  cache (V2-Lite: 576 values per token per layer instead of 16 x 320 decompressed) and costs
  2 * H * T * (dn * r + S * (r + dr) + S * r + r * dv) FLOPs. Prefill of a long prompt is cheaper
  decompressed (its cost does not multiply with T), but one graph serves both and decode is
  the edge's bottleneck.

* MoE: the router (fp32, as transformers computes it) picks top-k experts with TopK; each routed
  expert is its own three 2-D linears (`experts.{e}.gate_proj.weight`, ..., DeepSeek's on-disk
  names), so each is an ordinary INT4/INT8 DequantizeLinear -> MatMul on constant weights. Expert
  e runs inside an `If` taken only when some token chose it, on the tokens that chose it (NonZero
  -> Gather), and its output goes back with ScatterND. A decoded token therefore reads only its k
  experts' weights; a prompt runs each expert on its own tokens (no E/k compute blow-up). See
  export/moe.py `weight_bytes_per_token` for the forms considered.

torch is imported inside the functions: archs/ is read by `dsedge plan`, which needs no torch.
"""
from __future__ import annotations

import types

from .base import ArchSpec, MoeSpec, Reference, Smoothing

# q_proj without query compression (V2-Lite), q_a_proj/q_b_proj with it (V2, V3)
_MLA_LINEARS = ("self_attn.q_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.o_proj")

SPEC = ArchSpec(
    name="DeepseekV2ForCausalLM", model_type="deepseek_v2", layers_prefix="model.layers",
    linears=_MLA_LINEARS + ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), moe_linears=_MLA_LINEARS,
    moe=MoeSpec(), attention="mla", min_transformers="5.0",
    fp16_linears={
        "self_attn.kv_b_proj": (
            "the exported (absorbed) MLA splits it per head into W_uk (H, dn, r) and W_uv (H, dv, r) that "
            "multiply the query and the attention output as batched 3-D MatMuls; its per-output-channel scales "
            "would then run along two axes (head, row), which DequantizeLinear's 1-D per-axis scale cannot "
            "express, and TensorRT takes blocked scales for INT4 only. It is r x H(dn + dv) per layer: 0.36 % of "
            "V2-Lite's weights (57 M of 15.7 B), read once per token whatever the context length"),
        "mlp.gate": "the router: its logits pick the experts through a discrete top-k (see MoeSpec.router)",
    },
    # llm-compressor 0.14 maps DeepseekV2ForCausalLM to these (its _glm4_moe_lite_mappings): the
    # router is not a balance layer there, so dsedge compensates it (archs/moe.py)
    awq_mappings=(
        Smoothing("re:.*input_layernorm$", ("re:.*(q|q_a)_proj$", "re:.*kv_a_proj_with_mqa$")),
        Smoothing("re:.*q_a_layernorm$", ("re:.*q_b_proj$",)),
        Smoothing("re:.*kv_a_layernorm$", ("re:.*kv_b_proj$",)),
        Smoothing("re:.*post_attention_layernorm$", ("re:.*gate_proj$", "re:.*up_proj$")),
        Smoothing("re:.*up_proj$", ("re:.*down_proj$",)),
    ),
    # SmoothQuant's static activation scales per expert are not done; GPTQModel does not take the
    # fused experts: llm-compressor linearizes them and calibrates every expert on every token
    methods=("fp16", "rtn", "int8", "gptq", "awq"), backends=("llmcompressor",),
    export_patch="dsedge.archs.deepseek_v2:prepare", export_form="mla-absorbed/moe-if-nonzero-v1",
    reference=Reference("deepseek-v2-tiny", tokenizer="wordlevel", config=dict(
        # V2-Lite's structure at toy size: hidden 2048 -> 256, 27 layers -> 4, 16 heads -> 8,
        # kv_lora_rank 512 -> 128, rope 64 / nope 128 / v 128 -> 32 each, 64 routed experts top-6
        # + 2 shared -> 8 top-2 + 2, moe_intermediate 1408 -> 128; every in_features a multiple of 128
        hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=8, kv_lora_rank=128, q_lora_rank=None, qk_nope_head_dim=32, qk_rope_head_dim=32,
        v_head_dim=32, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=2, moe_intermediate_size=128,
        first_k_dense_replace=1, topk_method="greedy", norm_topk_prob=False, routed_scaling_factor=1.0,
        max_position_embeddings=512, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False, rms_norm_eps=1e-6)),
    real_shapes=("deepseek-v2-lite", "deepseek-coder-v2-lite", "deepseek-v2"),
)


def _rope(x, cos, sin):
    """Interleaved-pair rotation of x (B, h, T, d) by cos/sin (B, T, d/2), in fp32."""
    import torch

    xf = x.float().reshape(*x.shape[:-1], -1, 2)                     # (B, h, T, d/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    c, s = cos[:, None], sin[:, None]                                 # (B, 1, T, d/2)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(3).to(x.dtype)


def _rotary_forward(self, x, position_ids):
    freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :].float()   # (B, T, d/2)
    return freqs.cos() * self.attention_scaling, freqs.sin() * self.attention_scaling


def _mla_forward(self, hidden_states, attention_mask=None, past_key_values=None, position_embeddings=None,
                 **kwargs):
    import torch

    b, t, _ = hidden_states.shape
    h, dn, dr, dv, r = (self.num_heads, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim,
                        self.kv_lora_rank)
    if self.q_lora_rank is None:
        q = self.q_proj(hidden_states)
    else:
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden_states)))
    q = q.view(b, t, h, dn + dr).transpose(1, 2)                      # (B, H, T, dn+dr)
    q_nope, q_rope = q.split([dn, dr], dim=-1)
    c, k_rope = self.kv_a_proj_with_mqa(hidden_states).split([r, dr], dim=-1)
    c = self.kv_a_layernorm(c).view(b, 1, t, r)                       # (B, 1, T, r)
    k_rope = k_rope.view(b, 1, t, dr)                                 # (B, 1, T, dr)
    cos, sin = position_embeddings
    q_rope, k_rope = _rope(q_rope, cos, sin), _rope(k_rope, cos, sin)
    if past_key_values is not None:
        c, k_rope = past_key_values.update(c, k_rope, self.layer_idx)  # (B, 1, S, r), (B, 1, S, dr)
    w = self.kv_b_proj.weight.view(h, dn + dv, r)
    w_uk, w_uv = w[:, :dn], w[:, dn:]                                 # (H, dn, r), (H, dv, r)
    q_lat = torch.matmul(q_nope, w_uk)                                # (B, H, T, r)
    scores = (torch.matmul(q_lat, c.transpose(-1, -2))
              + torch.matmul(q_rope, k_rope.transpose(-1, -2))) * self.scaling   # (B, H, T, S)
    s_len = c.shape[-2]
    if attention_mask is None:  # causal: query i (position S - T + i) sees keys 0 .. S - T + i
        pos = torch.arange(s_len, device=scores.device)
        attention_mask = pos[None, :] <= (s_len - t + torch.arange(t, device=scores.device))[:, None]
    mask = attention_mask[..., :s_len]                                # bool (True: attend) or additive
    scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    p = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    o = torch.matmul(torch.matmul(p, c), w_uv.transpose(-1, -2))      # (B, H, T, r) -> (B, H, T, dv)
    o = o.transpose(1, 2).reshape(b, t, h * dv)
    return self.o_proj(o), None


def _expert_forward(self, x):                                         # (n, H) -> (n, H)
    return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def experts_as_linears(fused, dtype, device="meta"):
    """transformers' fused (E, 2I, H) / (E, H, I) experts as E modules of three linears, named as
    in DeepSeek's checkpoints: `experts.{e}.gate_proj.weight`."""
    import torch

    experts = torch.nn.ModuleList()
    with torch.device(device):
        for _ in range(fused.num_experts):
            m = torch.nn.Module()
            m.gate_proj = torch.nn.Linear(fused.hidden_dim, fused.intermediate_dim, bias=False)
            m.up_proj = torch.nn.Linear(fused.hidden_dim, fused.intermediate_dim, bias=False)
            m.down_proj = torch.nn.Linear(fused.intermediate_dim, fused.hidden_dim, bias=False)
            m.act = fused.act_fn
            m.forward = types.MethodType(_expert_forward, m)
            experts.append(m)
    return experts.to(dtype)


def _moe_forward(self, hidden_states):
    import torch

    shape = hidden_states.shape
    x = hidden_states.reshape(-1, shape[-1])                          # (N, H)
    _, top_w, top_i = self.gate(x)                                    # (N, K) fp32, (N, K) int64
    routed = torch.zeros_like(x)
    for e, expert in enumerate(self.experts):
        w_e = ((top_i == e).to(top_w.dtype) * top_w).sum(-1)          # (N,) 0 where e was not chosen

        def run(x, w_e, routed, expert=expert):
            tok = torch.nonzero(w_e > 0).squeeze(-1)                  # (n,) tokens that chose e
            y = expert(x[tok]) * w_e[tok, None].to(x.dtype)           # (n, H)
            # a token picks an expert at most once: a plain ScatterND (TensorRT has no reduction)
            return routed + torch.zeros_like(routed).index_put((tok,), y)

        def skip(x, w_e, routed):
            return routed.clone()

        routed = torch.cond(w_e.gt(0).any(), run, skip, (x, w_e, routed))
    return routed.view(shape) + self.shared_experts(hidden_states)


def prepare(model) -> None:
    """Swap in the export forms (module docstring) on a meta-device DeepseekV2ForCausalLM."""
    dtype = next(model.parameters()).dtype
    inner = model.model
    inner.rotary_emb.forward = types.MethodType(_rotary_forward, inner.rotary_emb)
    for layer in inner.layers:
        layer.self_attn.forward = types.MethodType(_mla_forward, layer.self_attn)
        if hasattr(layer.mlp, "experts"):
            layer.mlp.experts = experts_as_linears(layer.mlp.experts, dtype)
            layer.mlp.forward = types.MethodType(_moe_forward, layer.mlp)
