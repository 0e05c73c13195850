"""Qwen3 layout: DeepSeek-R1-0528-Qwen3-8B. Llama-shaped blocks without q/k/v bias, with a per-head
RMSNorm on the queries and keys (q_norm / k_norm, over head_dim, before the rotary embedding), an
explicit head_dim (128: heads x head_dim need not equal hidden_size) and YaRN rope scaling.

q_norm / k_norm are norms (FP16, like every norm); AWQ / SmoothQuant scale q_proj's and k_proj's
input channels, which leaves their outputs, and so the per-head norms, unchanged."""
from .base import DENSE_AWQ, DENSE_LINEARS, DENSE_SMOOTHQUANT, TINY_DENSE, ArchSpec, Reference
from .qwen2 import QWEN2_SPLIT

SPEC = ArchSpec(
    name="Qwen3ForCausalLM", model_type="qwen3", layers_prefix="model.layers", linears=DENSE_LINEARS, qk_norm=True,
    # llm-compressor 0.14 maps Qwen3ForCausalLM to its default AWQ / SmoothQuant mappings, as Qwen2
    awq_mappings=DENSE_AWQ, smoothquant_mappings=DENSE_SMOOTHQUANT, min_transformers="4.51",
    # Qwen3's tokenizer is Qwen2's byte-level BPE (tokenizer_class Qwen2Tokenizer). The tiny
    # reference keeps what distinguishes the family: head_dim 64 with 8 heads (q_proj 256 -> 512,
    # heads x head_dim != hidden) and YaRN scaling (factor 4 over an original 128 positions)
    reference=Reference("qwen3-tiny", tokenizer="bpe", tokenizer_class="Qwen2Tokenizer", split=QWEN2_SPLIT,
                        config=dict(TINY_DENSE, head_dim=64, attention_bias=False, use_sliding_window=False,
                                    rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                     "original_max_position_embeddings": 128})),
    real_shapes=("r1-0528-qwen3-8b",),
)
