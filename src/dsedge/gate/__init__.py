"""Accuracy-regression gate: compare a candidate build with a baseline, metric by metric.

inputs.py      what can be gated (artifact folder, report.json, baseline file) -> Gateable
thresholds.py  limits from the CLI and dsedge.yaml's `gate:` section
compare.py     comparability (same eval data, same source model) and one row per metric
baseline.py    the small baseline file `--update-baseline` writes
junit.py, summary.py   JUnit XML and Markdown ($GITHUB_STEP_SUMMARY) of a result
"""
from .baseline import write_baseline
from .compare import GateResult, Row, check_comparable, run_gate
from .inputs import METRICS, Gateable, load_gateable
from .junit import to_junit
from .summary import to_markdown
from .thresholds import Limit, Thresholds, resolve_thresholds

__all__ = ["GateResult", "Row", "check_comparable", "run_gate", "METRICS", "Gateable", "load_gateable",
           "write_baseline", "to_junit", "to_markdown", "Limit", "Thresholds", "resolve_thresholds"]
