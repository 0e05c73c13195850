"""Tiny reference checkpoints trained offline on a generated corpus (see README.md).

    checkpoint_path("qwen2-tiny")  -> folder loadable with AutoModelForCausalLM / AutoTokenizer
    eval_text_path(), calib_text_path(), task_path()  -> shipped data files
"""
from __future__ import annotations

from pathlib import Path

REFERENCE_MODELS: dict[str, str] = {"qwen2-tiny": "Qwen2ForCausalLM", "llama-tiny": "LlamaForCausalLM",
                                    "deepseek-v2-tiny": "DeepseekV2ForCausalLM"}
DEFAULT_MODEL = "qwen2-tiny"

_HERE = Path(__file__).resolve().parent


def checkpoint_path(name: str = DEFAULT_MODEL) -> Path:
    """Folder of the reference checkpoint `name` (one of REFERENCE_MODELS)."""
    if name not in REFERENCE_MODELS:
        raise KeyError(f"unknown reference model {name!r}; available: {', '.join(REFERENCE_MODELS)}")
    return _HERE / "checkpoints" / name


def eval_text_path() -> Path:
    """Held-out evaluation text (one sentence per line)."""
    return _HERE / "data" / "eval.txt"


def calib_text_path() -> Path:
    """Calibration text for quantizers (one sentence per line, disjoint seed from eval/train)."""
    return _HERE / "data" / "calib.txt"


def task_path() -> Path:
    """Arithmetic task, JSON lines of {"prompt": ..., "answer": ...} (single-token answers)."""
    return _HERE / "data" / "task.jsonl"
