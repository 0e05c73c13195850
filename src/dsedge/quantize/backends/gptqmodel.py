"""GPTQModel backend (second implementation of GPTQ and AWQ, for comparing two libraries).

NOT IMPLEMENTED YET: the handlers refuse with a clear message. What is known (see
/work/shared/notes/libraries-on-cpu.md): GPTQModel 7.6.0 quantizes GPTQ on CPU and AWQ with
BACKEND.AWQ_TORCH; it loads models from a folder only (GPTQModel.load(path, QuantizeConfig)), so the
FP32 model must be saved to a temporary folder first; its GPTQ defaults differ from the paper
(damp_percent 0.05, act_group_aware on: pass damp_percent=config.damping, act_group_aware=False);
its block size is fixed at 128; its quantized modules (TorchQuantLinear: qweight int32 [K/8, N],
qzeros [G, N/8], scales fp16 [G, N], g_idx [K]; dequantize_weight()) are what a conversion reads.
"""
from __future__ import annotations

import os

from ...errors import ConfigError

# GPTQModel sizes a worker pool from the CPU count and fails on machines with <= 3 cores
# ("Virtual pool ... requests 2 workers"); 2 workers work there. Set before gptqmodel is imported.
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")


def _not_yet(method: str):
    raise ConfigError(f"--backend gptqmodel is not implemented yet for {method}",
                      "use --backend llmcompressor (the default)")


def gptq(config, model, names, calib):
    _not_yet("gptq")


def awq(config, model, names, calib):
    _not_yet("awq")
