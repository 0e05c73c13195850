"""DeepSeek-V2 / V2-Lite (MLA + MoE) in standard ONNX operators.

transformers' modules do not export as they are: the rotary embedding is complex-valued, the
experts run a data-dependent Python loop over fused 3-D parameters, and MLA re-expands the whole
compressed cache through kv_b_proj at every step. `prepare(model)` swaps, on the meta-device model
that is traced (never on a model that holds weights), three forwards for export forms with the same
parameters and the same arithmetic:

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
  `moe_bytes_per_token` for the forms considered.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

EXPORT_FORM = "mla-absorbed/moe-if-nonzero-v1"   # part of the trace cache key


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved-pair rotation of x (B, h, T, d) by cos/sin (B, T, d/2), in fp32."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)                     # (B, h, T, d/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    c, s = cos[:, None], sin[:, None]                                 # (B, 1, T, d/2)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(3).to(x.dtype)


def _rotary_forward(self, x, position_ids):
    freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :].float()   # (B, T, d/2)
    return freqs.cos() * self.attention_scaling, freqs.sin() * self.attention_scaling


def _mla_forward(self, hidden_states, attention_mask=None, past_key_values=None, position_embeddings=None,
                 **kwargs):
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


class _Expert(torch.nn.Module):
    def __init__(self, hidden: int, inter: int, act):
        super().__init__()
        self.gate_proj = torch.nn.Linear(hidden, inter, bias=False)
        self.up_proj = torch.nn.Linear(hidden, inter, bias=False)
        self.down_proj = torch.nn.Linear(inter, hidden, bias=False)
        self.act = act

    def forward(self, x):                                             # (n, H) -> (n, H)
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class ExpertsAsLinears(torch.nn.ModuleList):
    """transformers' fused (E, 2I, H) / (E, H, I) experts as E modules of three linears, named as
    in DeepSeek's checkpoints: `experts.{e}.gate_proj.weight`."""

    def __init__(self, fused, dtype, device="meta"):
        with torch.device(device):
            super().__init__([_Expert(fused.hidden_dim, fused.intermediate_dim, fused.act_fn)
                              for _ in range(fused.num_experts)])
        self.to(dtype)


def _moe_forward(self, hidden_states):
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
            layer.mlp.experts = ExpertsAsLinears(layer.mlp.experts, dtype)
            layer.mlp.forward = types.MethodType(_moe_forward, layer.mlp)


PREPARE = {"DeepseekV2ForCausalLM": prepare}   # architectures[0] -> its export forms


def prepare_for(config):
    """The `prepare` of config's architecture, or None when transformers' modules export as they are."""
    return PREPARE.get((getattr(config, "architectures", None) or [""])[0])


def weight_bytes_per_token(path, top_k: int) -> dict:
    """Weight bytes a decoded token reads, from the exported graph, for each MoE form considered.

    Each `If` of the main graph is one routed expert: the initializers its branch reads are that
    expert's weights (codes + scales + zero points). Everything else in the main graph is read by
    every token (attention, shared experts, routers, dense layers, embedding row excluded: a
    lookup reads one row, counted as such).

    * "if_per_expert" (exported): a token reads its top_k experts per MoE layer.
    * "dense_all_experts": every expert on every token, weighted by the router (0 for the
      unselected): the same constants behind DequantizeLinear -> MatMul, so TensorRT-compatible,
      but every expert is read.
    * "gather_dequantized": DequantizeLinear of the stacked (E, ...) constant, then Gather of the
      selected experts: TensorRT-compatible too, but it dequantizes (reads) all E experts.
    * "gather_quantized": Gather the selected experts' INT4 codes and scales, then dequantize:
      reads only top_k experts, but the DequantizeLinear input is then not a constant (TensorRT's
      INT4 path takes weights only) and ONNX Gather does not take INT4 at all (opset 21).
    """
    import onnx

    from ..engine.graph import all_nodes, graphs, nbytes, type_name

    g = onnx.load(str(path), load_external_data=False).graph
    size = {i.name: nbytes(type_name(i.data_type), i.dims) for sub in graphs(g) for i in sub.initializer}
    experts = []                                                     # bytes of each If (expert)
    in_branch: set[str] = set()
    for n in g.node:
        if n.op_type == "If":   # its branches' initializers, and the outer ones they read
            names = {x for a in n.attribute if a.type == onnx.AttributeProto.GRAPH
                     for node in all_nodes(a.g) for x in node.input if x in size}
            experts.append(sum(size[x] for x in names))
            in_branch |= names
    always = sum(v for k, v in size.items() if k not in in_branch)
    embed = next((i for i in g.initializer if i.name.endswith("embed_tokens.weight")), None)
    if embed is not None:  # a lookup reads one row of the embedding
        always -= size[embed.name] - size[embed.name] // embed.dims[0]
    n_layers = sum(n.op_type == "TopK" for n in g.node)             # one router per MoE layer
    per_expert = sum(experts) / max(1, len(experts))
    selected = always + n_layers * top_k * per_expert
    every = always + sum(experts)
    return {"experts": len(experts), "moe_layers": n_layers, "top_k": top_k,
            "bytes_per_expert": round(per_expert), "always_read": always,
            "forms": {"if_per_expert": round(selected), "dense_all_experts": every,
                      "gather_dequantized": every, "gather_quantized": round(selected)},
            "tensorrt_compatible": {"if_per_expert": True, "dense_all_experts": True,
                                    "gather_dequantized": True, "gather_quantized": False}}
