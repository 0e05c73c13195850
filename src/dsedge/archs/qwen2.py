"""Qwen2 layout: DeepSeek-R1-Distill-Qwen 1.5B / 7B / 14B / 32B. Llama-shaped blocks whose q/k/v
projections carry a bias (hard-wired in transformers' Qwen2Attention)."""
from .base import DENSE_AWQ, DENSE_LINEARS, DENSE_SMOOTHQUANT, TINY_DENSE, ArchSpec, Reference

# Qwen2Tokenizer's pre-tokenizer split pattern (transformers/models/qwen2/tokenization_qwen2.py)
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
               r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

SPEC = ArchSpec(
    name="Qwen2ForCausalLM", model_type="qwen2", layers_prefix="model.layers", linears=DENSE_LINEARS,
    qkv_bias=True, awq_mappings=DENSE_AWQ, smoothquant_mappings=DENSE_SMOOTHQUANT,
    # transformers 5 loads model_type "qwen2" folders with Qwen2Tokenizer whatever tokenizer.json
    # holds, so the reference's tokenizer is a byte-level BPE in its layout
    reference=Reference("qwen2-tiny", tokenizer="bpe", config=dict(TINY_DENSE, use_sliding_window=False),
                        tokenizer_class="Qwen2Tokenizer", split=QWEN2_SPLIT),
    # qwen2-kjv (reference/text.py): every linear's in_features a multiple of 128 (256, 768),
    # head_dim 64 (GQA 4/2), 8 layers: INT4 g128 costs a measurable perplexity on real text
    # (+0.52 %; 4 layers of 384 cost +0.23 %)
    text_reference=Reference("qwen2-kjv", tokenizer="bpe", tokenizer_class="Qwen2Tokenizer", split=QWEN2_SPLIT,
                             config=dict(hidden_size=256, intermediate_size=768, num_hidden_layers=8,
                                         num_attention_heads=4, num_key_value_heads=2)),
    real_shapes=("r1-distill-qwen-1.5b", "r1-distill-qwen-7b", "r1-distill-qwen-14b", "r1-distill-qwen-32b"),
)
