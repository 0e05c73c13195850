"""Tiny reference checkpoints trained offline on a generated corpus, and one trained on real
English text (see README.md).

    checkpoint_path(DEFAULT_MODEL)  -> folder loadable with AutoModelForCausalLM / AutoTokenizer
    eval_text_path(), calib_text_path(), task_path()  -> shipped data files
    checkpoint_path(TEXT_MODEL), text_eval_path(), text_calib_path()  -> the real-text reference
"""
from __future__ import annotations

from pathlib import Path

from ..archs import supported

# reference checkpoint name -> its architecture, one per family (ArchSpec.reference)
REFERENCE_MODELS: dict[str, str] = {s.reference.name: s.name for s in supported() if s.reference is not None}
DEFAULT_MODEL = supported()[0].reference.name   # the first family's: the quick start builds it
# the real-text reference (text.py, ArchSpec.text_reference): trained on the King James Bible;
# INT4 costs a measurable perplexity on it. Not one per family, so not in REFERENCE_MODELS
TEXT_MODELS: dict[str, str] = {s.text_reference.name: s.name for s in supported() if s.text_reference is not None}
TEXT_MODEL = next(iter(TEXT_MODELS))

_HERE = Path(__file__).resolve().parent


def checkpoint_path(name: str = DEFAULT_MODEL) -> Path:
    """Folder of the reference checkpoint `name` (one of REFERENCE_MODELS)."""
    if name not in REFERENCE_MODELS and name not in TEXT_MODELS:
        raise KeyError(f"unknown reference model {name!r}; available: {', '.join([*REFERENCE_MODELS, *TEXT_MODELS])}")
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


def text_eval_path() -> Path:
    """Held-out real text of the real-text reference (KJV passages it never saw; text.py)."""
    return _HERE / "data" / "kjv" / "eval.txt"


def text_calib_path() -> Path:
    """Calibration text of the real-text reference (other held-out KJV passages; text.py)."""
    return _HERE / "data" / "kjv" / "calib.txt"
