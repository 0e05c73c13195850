"""Exported FP16 graphs of the reference checkpoint (one export per config per session)."""
import pytest
import torch

from dsedge.quantize import Fp16Config, Int4WeightOnlyConfig, Int8WeightOnlyConfig

CONFIGS = {"int4": Int4WeightOnlyConfig(group_size=128), "int8": Int8WeightOnlyConfig(), "fp16": Fp16Config()}


@pytest.fixture(scope="session")
def fp16_graph(exported):
    """fp16_graph(kind) -> path of the qwen2-tiny export with FP16 activations, as TensorRT runs it."""
    return lambda kind: exported("qwen2-tiny", CONFIGS[kind], torch.float16)[0]
