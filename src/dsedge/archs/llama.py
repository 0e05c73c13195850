"""Llama layout: DeepSeek-R1-Distill-Llama 8B / 70B, deepseek-llm, deepseek-coder."""
from .base import DENSE_AWQ, DENSE_LINEARS, DENSE_SMOOTHQUANT, TINY_DENSE, ArchSpec, Reference

SPEC = ArchSpec(
    name="LlamaForCausalLM", model_type="llama", layers_prefix="model.layers", linears=DENSE_LINEARS,
    awq_mappings=DENSE_AWQ, smoothquant_mappings=DENSE_SMOOTHQUANT,
    reference=Reference("llama-tiny", tokenizer="wordlevel",
                        config=dict(TINY_DENSE, attention_bias=False, mlp_bias=False)),
    real_shapes=("r1-distill-llama-8b", "r1-distill-llama-70b", "deepseek-llm-7b", "deepseek-coder-1.3b",
                 "deepseek-coder-6.7b", "deepseek-coder-33b"),
)
