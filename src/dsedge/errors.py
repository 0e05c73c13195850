"""Typed errors. Every error a user can cause names the problem and the fix.

The CLI prints `str(err)` (problem, then "fix: ...") on one or two lines and exits with
`err.exit_code`: 2 for usage errors (bad options, bad files), 1 for failed checks.
"""
from __future__ import annotations


class DsedgeError(Exception):
    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None):
        self.problem, self.fix = problem, fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")


class UsageError(DsedgeError):
    """Bad option, missing or malformed input file."""
    exit_code = 2


class CheckpointError(UsageError):
    """The checkpoint folder, config.json or safetensors files are unusable."""


class UnsupportedArchitectureError(UsageError):
    pass


class ConfigError(UsageError):
    """A quantization config that cannot apply to this model (bits, group size...)."""


class FitError(UsageError):
    """--fit cannot meet its budget: even the cheapest storage of every unit is too big."""


class HostMemoryError(UsageError):
    """The planner predicts the build will not fit in this host's memory."""


class TargetError(UsageError):
    """Unknown target or an invalid targets/*.yaml."""


class ExportError(DsedgeError):
    pass


class ShapeError(ExportError):
    """An exported output has a shape other than the PyTorch model's."""


class AtolError(ExportError):
    """An exported output differs from the PyTorch model's by more than the tolerance."""


class BuildInterrupted(DsedgeError):
    exit_code = 130
