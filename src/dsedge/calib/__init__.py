"""Calibration data for calibrated quantization (GPTQ, AWQ, SmoothQuant).

The contract every quantization handler reads:

    calib = CalibData(input_ids=..., source=..., sha256=..., recipe={...})
    calib.input_ids          # (N, T) int64 token ids, N samples of T tokens
    calib.describe()         # recorded in the manifest (recipe + data hash)

Recipes (calibration/*.yaml, `--calib FILE|RECIPE`) are resolved into a CalibData by
`dsedge.calib.recipes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CalibData:
    input_ids: torch.Tensor                      # (N, T) int64
    source: str                                  # file path, dataset name or "reference corpus"
    sha256: str                                  # of the source bytes that produced the samples
    recipe: dict = field(default_factory=dict)   # the resolved recipe (samples, seq_len, seed, ...)
    # the tokenizer that made the ids (a library that loads the model from a folder wants it saved
    # beside the weights: GPTQModel); not part of the manifest
    tokenizer: object = field(default=None, repr=False, compare=False)

    def describe(self) -> dict:
        n, t = self.input_ids.shape
        return {"source": self.source, "sha256": self.sha256, "samples": int(n), "seq_len": int(t),
                "recipe": self.recipe}
