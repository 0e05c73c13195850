"""DeepSeek-V3 / R1 layout: MLA + MoE with sigmoid routing and a per-expert score correction bias.
Known to the planner (`dsedge plan`); not built yet."""
from .base import ArchSpec, MoeSpec

_MLA_LINEARS = ("self_attn.q_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.o_proj")

SPEC = ArchSpec(
    name="DeepseekV3ForCausalLM", model_type="deepseek_v3", layers_prefix="model.layers",
    linears=_MLA_LINEARS + ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), moe_linears=_MLA_LINEARS,
    moe=MoeSpec(router_bias=True), attention="mla",
    fp16_linears={"self_attn.kv_b_proj": "absorbed into the query and the output (as DeepSeek-V2)"},
    plan_notes={"num_nextn_predict_layers": "multi-token-prediction layer not counted (not used for generation)"},
    real_shapes=("deepseek-v3",),
    unsupported="DeepSeek-V3 / R1 (MLA + MoE with sigmoid routing)",
)
