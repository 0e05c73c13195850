"""The export contract of a decoder with an explicit KV cache: names, dynamic axes, dummy
inputs and the tolerance the exported graph must meet against PyTorch.

Names follow Optimum / onnxruntime-genai: inputs `input_ids`, `attention_mask`, `position_ids`,
`past_key_values.{i}.key|value`; outputs `logits`, `present.{i}.key|value`.
Cache tensors are (batch, n_kv_heads, past_len, head_dim).

Multi-head latent attention caches what it compresses to, not per-head K and V: per layer
`past_key_values.{i}.compressed_kv` (batch, 1, past_len, kv_lora_rank), the normalised latent,
and `past_key_values.{i}.k_rope` (batch, 1, past_len, qk_rope_head_dim), the rotated key shared by
all heads. That is transformers' own DynamicCache layout for the model. Which a family has is
its ArchSpec.cache_layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..archs import arch_for

# Tolerances on logits, |onnx - torch| <= atol + rtol * max|torch|. FP16 activations round each
# matmul output to 11 bits; measured on the reference checkpoints the worst logit error is about
# 1e-2 with |logits| ~ 20, so the FP16 bound leaves ~5x headroom. FP32 graphs agree to ~1e-5.
TOLERANCE = {torch.float16: (2e-2, 5e-3), torch.float32: (1e-4, 1e-5)}


@dataclass(frozen=True)
class DecoderContract:
    n_layers: int
    layout: tuple[tuple[str, int, int], ...]   # per layer: (kind, heads, dim) of each cache tensor
    vocab_size: int

    @classmethod
    def from_config(cls, cfg) -> "DecoderContract":
        return cls(cfg.num_hidden_layers, arch_for(cfg).cache_layout(cfg), cfg.vocab_size)

    @property
    def cache_templates(self) -> list[tuple[str, str]]:
        """(input, output) name per cache tensor of one layer, "%d" for the layer index
        (onnxruntime-genai's genai_config takes the names in this form)."""
        return [(f"past_key_values.%d.{kind}", f"present.%d.{kind}") for kind, _, _ in self.layout]

    @property
    def cache_names(self) -> list[tuple[str, str]]:
        """(input name, output name) per cache tensor, in graph order."""
        return [(p % i, o % i) for i in range(self.n_layers) for p, o in self.cache_templates]

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "position_ids"] + [p for p, _ in self.cache_names]

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + [o for _, o in self.cache_names]

    def dynamic_shapes(self):
        """torch.export dims: batch, seq, past and total (past + seq) length are all dynamic."""
        Dim = torch.export.Dim
        batch, seq, past, total = Dim("batch"), Dim("sequence_length"), Dim("past_sequence_length"), Dim("total_sequence_length")
        cache = tuple({0: batch, 2: past} for _ in self.cache_names)
        return ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq}, cache)

    def dummy_inputs(self, dtype: torch.dtype, device="cpu", batch: int = 2, seq: int = 3, past: int = 4):
        """Example inputs for tracing. torch.export specialises dims equal to 0 or 1, so every
        dynamic dim is >= 2 here (a batch-1 trace would come out fixed to batch 1)."""
        ids = torch.zeros(batch, seq, dtype=torch.int64, device=device)
        mask = torch.ones(batch, past + seq, dtype=torch.int64, device=device)
        pos = torch.arange(past, past + seq, device=device).expand(batch, seq)
        cache = tuple(torch.zeros(batch, heads, past, dim, dtype=dtype, device=device)
                      for _ in range(self.n_layers) for _, heads, dim in self.layout)
        return ids, mask, pos, cache
