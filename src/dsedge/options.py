"""The options of one `dsedge build`, validated once and handed to every stage."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

DTYPES = ("float16", "float32")
CHECK_SCOPES = ("auto", "full", "truncated", "quick")
QUICK_WINDOWS, QUICK_TASK = 4, 20     # --check quick: the eval's first windows and task examples only
SELF_EVAL = "self"                    # --eval self: windows the FP16 model generates (calib/generate.py)


@dataclass(frozen=True)
class BuildOptions:
    model: str | Path | None = None          # None: the bundled reference checkpoint
    target: str = "orin"
    quant: object | None = None              # a QuantConfig; None: INT4 RTN (or the import's own)
    output: str | Path | None = None
    eval_path: str | Path | None = None
    dtype: str = "float16"
    eval_separator: str = "newline"
    eval_windows: int = 32                   # --eval-windows: eval windows (at most; fewer when the text is short)
    eval_window: int = 128                   # --eval-window: tokens per eval window (the context perplexity sees)
    kv_cache: str = "fp16"                   # --kv-cache: fp16 | int8 (quantize/kv_cache.py)
    reference_model: str | Path | None = None
    calib_spec: str | Path | None = None
    allow_pickle: bool = False
    overwrite: bool = False
    targets_dir: Path | None = None
    latency: bool = True
    generate_tokens: int = 16
    force: bool = False
    check_scope: str = "auto"
    use_cache: bool = True
    max_memory_gb: float | None = None
    budgets: tuple[str, ...] = ()
    build_engine: bool = True
    chat_template: bool | None = None       # calibration and eval text through the tokenizer's chat template
    jetpack: str | None = None              # Jetson targets: one of the target's JetPack releases (--jetpack)

    @property
    def eval_self(self) -> bool:
        return self.eval_path is not None and str(self.eval_path) == SELF_EVAL

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype {self.dtype} is not supported", "use float16 (TensorRT) or float32")
        if self.check_scope not in CHECK_SCOPES:
            raise UsageError(f"--check {self.check_scope} is not one of {', '.join(CHECK_SCOPES)}",
                             "use --check auto")
        if self.eval_windows < 1:
            raise UsageError(f"--eval-windows {self.eval_windows} must be at least 1", "use --eval-windows 32")
        if self.eval_window < 16:
            raise UsageError(f"--eval-window {self.eval_window} is too short to measure perplexity on",
                             "use --eval-window 128 (or more, up to the model's max_position_embeddings)")
        from .quantize.kv_cache import check_kv_dtype

        check_kv_dtype(self.kv_cache)
        object.__setattr__(self, "budgets", tuple(self.budgets))

    @property
    def act_dtype(self):
        import torch

        return getattr(torch, self.dtype)
