"""Will a build fit in this host's memory? Decided from the safetensors headers before any
weight is read, so an impossible build is refused at once (or `--force`d)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..load.checkpoint import DTYPE_BYTES

GiB = 1 << 30
# Fixed cost of the process: torch, transformers, onnxruntime, the traced graph (measured ~0.6 GiB
# for the tiny reference build; the trace's node objects do not depend on the weights).
BASE_BYTES = int(1.0 * GiB)
TRUNCATED_LAYERS = 2
EVAL_WINDOWS, EVAL_WIDTH = 32, 128   # the default eval: 32 windows of 128 tokens
MOE_CHECK_BYTES_PER_PARAM = 5.5
MOE_TRUNCATED_BYTES_PER_PARAM = 4.5


def available_memory_bytes() -> int:
    """MemAvailable, capped by a cgroup v2 memory limit when one is set."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            avail = min(avail, int(limit))
    except (OSError, ValueError):
        pass
    return avail


@dataclass
class HostPlan:
    params: int
    largest_tensor: int            # elements
    stream_peak_bytes: int         # export alone: one tensor in flight
    full_check_bytes: int          # PyTorch FP16-reference + quantized copy in FP32, + onnxruntime
    truncated_check_bytes: int     # first layers + embeddings + head in FP32, then onnxruntime
    available_bytes: int
    scope: str                     # "full" | "truncated"
    check_layers: int              # decoder layers the PyTorch checks run on
    n_layers: int
    quantize_bytes: int = 0        # calibrated methods: the whole model in FP32 + the library's state
    method: str = ""

    @property
    def peak_bytes(self) -> int:
        return max(self.stream_peak_bytes, self.quantize_bytes,
                   self.full_check_bytes if self.scope == "full" else self.truncated_check_bytes)

    def shortfall(self) -> str:
        """What needs the memory, for the refusal."""
        if self.quantize_bytes >= self.peak_bytes:
            return (f"--method {self.method} calibrates the whole model in FP32: about "
                    f"{self.quantize_bytes / GiB:.1f} GiB ({self.params / 1e9:.2f} B parameters x 4 B, plus the "
                    "library's calibration state)")
        return f"this build needs about {self.peak_bytes / GiB:.1f} GiB of memory"

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.available_bytes

    def describe(self) -> dict:
        g = lambda b: round(b / GiB, 2)
        return {"params": self.params, "stream_peak_gib": g(self.stream_peak_bytes),
                "full_check_gib": g(self.full_check_bytes), "truncated_check_gib": g(self.truncated_check_bytes),
                "quantize_gib": g(self.quantize_bytes), "available_gib": g(self.available_bytes),
                "check_scope": self.scope, "check_layers": self.check_layers, "layers": self.n_layers}


def _layer(key: str, prefix: str) -> int:
    """The decoder layer index of a state-dict key under `prefix` ("model.layers.")."""
    head = key[len(prefix):].split(".", 1)[0]
    return int(head) if head.isdigit() else -1


# bytes per parameter of the exported graph by weight bits (INT4: codes + FP16 scales per 128 and
# the FP16 embedding / head; FP16: 2)
ONNX_BYTES_PER_PARAM = {4: 0.6, 8: 1.05, 16: 2.0}


def plan_host(ckpt, onnx_bytes_per_param: float | None = None, available: int | None = None,
              budget_fraction: float = 0.7, quant=None) -> HostPlan:
    """Streaming export peak: the largest tensor in BF16 (mmap), FP32, FP16 and codes, plus a
    1 GiB write window (onnx_ir's max in-flight bytes). The full check needs the model twice in
    FP32 (reference and fake-quantized) and the onnxruntime session; when that exceeds
    budget_fraction of what is available, the export is validated on the first
    TRUNCATED_LAYERS layers and the head (same weights), once in FP32, and accuracy is not
    measured. quant: the build's config; a calibrated method (quant.needs_model) holds the whole
    model in FP32 while the library runs (quantize/calibrated.py), counted here with a quarter on
    top for its copies and activations."""
    if onnx_bytes_per_param is None:   # the check's onnxruntime session holds the graph's weights
        onnx_bytes_per_param = ONNX_BYTES_PER_PARAM.get(getattr(quant, "bits", 4), 0.6)
    sizes = {name: math.prod(info.shape) for name, info in ckpt.index.items()}
    params = sum(sizes.values())
    largest = max(sizes.values(), default=0)
    n = ckpt.n_layers
    prefix = ckpt.spec.layers_prefix + "."
    outside = [k for k in sizes if not k.startswith(prefix)]   # embeddings, head, norm
    first = [k for k in sizes if k.startswith(prefix) and _layer(k, prefix) < TRUNCATED_LAYERS]
    # the truncated check's model: its real first layers (MoE: not the average layer)
    t_params = sum(sizes[k] for k in outside + first)
    t_outside = sum(sizes[k] for k in outside)
    # A quantized tensor in flight: its checkpoint pages (BF16), FP32 copy, int8 codes and the
    # dequantized copy its error is measured against (the quantizer's temporaries are per row block:
    # quantize/primitives.py ROW_BLOCK_BYTES); measured 4.19 GiB on a 235 M-value MLP weight. A float
    # one (embedding, FP16 head, every tensor of an FP16 build): its pages and the FP16 initializer.
    bits = getattr(quant, "bits", 4)
    floats = [k for k in sizes if bits == 16 or not k.startswith(prefix) or len(ckpt.index[k].shape) < 2]
    largest_float = max((sizes[k] for k in floats), default=0)
    largest_quant = max((v for k, v in sizes.items() if k not in set(floats)), default=0)
    stream = BASE_BYTES + max(largest_quant * (2 + 4 + 1 + 4), largest_float * (2 + 2)) + GiB
    # the accuracy check holds one batch of logits per model (reference, PyTorch, ONNX, and
    # onnxruntime's output buffer), sized by the vocabulary (check/accuracy.py eval_batch)
    from ..check.accuracy import eval_batch

    vocab, width = int(ckpt.raw_config.get("vocab_size") or 0), EVAL_WIDTH
    logits = 4 * eval_batch(EVAL_WINDOWS, width, max(vocab, 1)) * width * vocab * 4
    # routed experts (one If branch each): measured on DeepSeek-V2-Lite cut to 2 layers, 8 -> 16
    # experts added 0.93 GiB of peak for 69 M expert parameters, ~5.5 B each beyond the dense terms
    # (the check's onnxruntime session does not hold them as compactly as the dense weights)
    moe = ckpt.spec.moe
    experts = sum(v for k, v in sizes.items() if moe is not None and f".{moe.experts}." in k)
    full = (BASE_BYTES + params * (4 + 4) + int(params * onnx_bytes_per_param * 1.5) + largest * 16 + logits
            + int(experts * MOE_CHECK_BYTES_PER_PARAM))
    # The truncated check exports its graph first, then runs PyTorch, then frees it before
    # onnxruntime loads the graph: the three never overlap.
    # routed experts in those layers: measured on DeepSeek-V2-Lite cut to 2 layers (all 64 experts),
    # the truncated check peaked at 10.5 GiB, 2.3 GiB over the dense terms below for its 553 M
    # expert parameters (transformers' fused 3-D experts next to the per-expert ONNX branches)
    experts_t = sum(sizes[k] for k in first if moe is not None and f".{moe.experts}." in k)
    if moe is None:
        # load/lean.py: the layers in FP32, embedding and head in FP16, one tensor read at a time
        # (at worst the head's pages beside the rest of the model). onnxruntime holds the graph (its layers at
        # onnx_bytes_per_param) and folds the FP16 head into an FP32 copy: ~4 B per value of the
        # embedding and head together. Measured on R1-Distill-Qwen-1.5B's shape (28 layers, INT4):
        # 2.87 GiB peak against 2.82 predicted.
        torch_side = (t_params - t_outside) * 4 + t_outside * 2 + largest_float * 2
        ort_side = t_outside * 4 + int((t_params - t_outside) * onnx_bytes_per_param * 1.5)
        truncated = BASE_BYTES + max(torch_side, ort_side)
    else:
        # transformers' from_pretrained holds the model in FP32 next to the checkpoint's pages it
        # read, resident until the load returns: measured on R1-Distill-Llama-70B cut to 2 layers
        # (1.84 B parameters), 11.07 GiB at the load against 1 + 1.84 B x (4 + 2) B.
        t_stored = sum(sizes[k] * DTYPE_BYTES.get(ckpt.index[k].dtype, 2) for k in outside + first)
        truncated = (BASE_BYTES + max(t_params * 4 + t_stored, t_params * 3, stream - BASE_BYTES)
                     + int(experts_t * MOE_TRUNCATED_BYTES_PER_PARAM))
    avail = available_memory_bytes() if available is None else available
    scope = "full" if full <= budget_fraction * avail else "truncated"
    calibrated = quant is not None and getattr(quant, "needs_model", False)
    quantize = BASE_BYTES + int(params * 4 * 1.25) if calibrated else 0
    return HostPlan(params, largest, stream, full, truncated, avail, scope,
                    n if scope == "full" else min(n, TRUNCATED_LAYERS), n, quantize,
                    getattr(quant, "method", "") if quant is not None else "")
