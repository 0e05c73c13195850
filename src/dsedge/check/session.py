"""onnxruntime (CPU) sessions over an exported decoder: full-sequence logits, cached decoding,
greedy generation. The only place that creates onnxruntime sessions."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# onnxruntime fuses DequantizeLinear(int4, blocked) + MatMul into MatMulNBits. Its default
# accuracy level (4) quantizes the activations to int8 on CPU, which would be measured as
# quantization error of the artifact. Level 1 keeps activations in fp32: the accuracy figures
# are those of the weights alone, as TensorRT runs them. Recorded in every report.
ACCURACY_LEVEL = 1
CACHE_DTYPES = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int8)": np.int8}


class OnnxDecoder:
    def __init__(self, path: Path, accuracy_level: int = ACCURACY_LEVEL, threads: int | None = None,
                 arena: bool = True):
        """arena=False: no CPU memory arena. The arena keeps the largest activations it has seen
        (rounded up to powers of two) for the session's life: on DeepSeek-V2's 128 heads an eval
        batch of 8 x 128 tokens left 2.5 GiB held against 1.6 GiB transient without it, and the
        batch ran no slower (the build's checks run a few large batches, not many small ones)."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.enable_cpu_mem_arena = arena
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
        # OMP_NUM_THREADS, the usual limit on a shared machine, also bounds onnxruntime's threads here
        threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or None
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        # Activation Q/DQ (SmoothQuant W8A8): onnxruntime's CPU fusion into integer kernels (u8s8
        # on x86 without VNNI) saturates intermediate sums, which measured logit errors of ~1.7 on
        # the reference W8A8 graph against 4e-6 without it. TensorRT does not run those kernels, so
        # the check keeps the Q/DQ arithmetic in float: what the graph specifies.
        self.int8_activations = _has_activation_qdq(path)
        if self.int8_activations:  # the QDQ -> integer-kernel fusions run at the "extended" level
            import onnxruntime as ort

            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.path, self.accuracy_level = Path(path), accuracy_level
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.cache_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        # the cache's dtype: the activations' (float16 / float32), or int8 (--kv-cache int8)
        self.dtype = CACHE_DTYPES[self.cache_inputs[0].type]
        # (batch, heads, past, dim) per cache input: K/V heads, or 1 for MLA's compressed cache
        self.cache_dims = [(i.shape[1], i.shape[3]) for i in self.cache_inputs]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def empty_cache(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, h, 0, d), self.dtype) for h, d in self.cache_dims]

    def run(self, ids: np.ndarray, past: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """ids (B, T) int64, past caches (B, n_kv, P, hd) -> logits (B, T, V) fp32, present caches."""
        b, t = ids.shape
        past = self.empty_cache(b) if past is None else past
        p = past[0].shape[2]
        feed = {"input_ids": ids.astype(np.int64),
                "attention_mask": np.ones((b, p + t), np.int64),
                "position_ids": np.tile(np.arange(p, p + t, dtype=np.int64), (b, 1))}
        feed.update({i.name: c for i, c in zip(self.cache_inputs, past)})
        logits, *present = self.session.run(self.output_names, feed)
        return logits.astype(np.float32), present

    def logits(self, ids: np.ndarray) -> np.ndarray:
        return self.run(ids)[0]

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        """Greedy decoding of n tokens through the KV cache: (B, T) -> (B, n)."""
        logits, cache = self.run(ids)
        out = []
        nxt = logits[:, -1].argmax(-1)[:, None]                      # (B, 1)
        for _ in range(n):
            out.append(nxt)
            logits, cache = self.run(nxt, cache)
            nxt = logits[:, -1].argmax(-1)[:, None]
        return np.concatenate(out, axis=1)


def _has_activation_qdq(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    outputs = {o.name for o in model.graph.output}       # an INT8 KV cache's writes are not activations
    return any(n.op_type == "QuantizeLinear" and n.output[0] not in outputs for n in model.graph.node)
