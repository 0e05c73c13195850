"""Targets: schema and loader for the top-level targets/*.yaml (installed as dsedge/_data/targets)."""
from .budgets import BUDGETS, apply_budget_overrides, parse_cli_budgets, project_budgets
from .schema import Target, find_target, list_targets, targets_dirs

__all__ = ["BUDGETS", "Target", "apply_budget_overrides", "find_target", "list_targets", "parse_cli_budgets",
           "project_budgets", "targets_dirs"]
