"""Targets: schema and loader for the top-level targets/*.yaml (installed as dsedge/_data/targets)."""
from .schema import Target, find_target, list_targets, targets_dirs

__all__ = ["Target", "find_target", "list_targets", "targets_dirs"]
