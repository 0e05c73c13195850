"""Markdown of a gate result, for people and for $GITHUB_STEP_SUMMARY."""
from __future__ import annotations

from .compare import GateResult

_MARK = {"pass": "✅ pass", "fail": "❌ **fail**", "skipped": "➖ skipped"}


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(res: GateResult) -> str:
    head = "✅ dsedge gate passed" if res.passed else (
        f"❌ dsedge gate failed: {', '.join(r.label for r in res.failures)}")
    c, b = res.candidate, res.baseline
    lines = [f"## {head}", "",
             f"- candidate: `{c.path}` ({c.label or c.kind})",
             f"- baseline: `{b.path}` ({b.label or b.kind})",
             f"- eval data sha256 `{(c.eval_sha256 or '')[:16]}…` (same for both); source model {c.source_name}",
             "", "| metric | baseline | candidate | change | limit | result | note |", "|---|---|---|---|---|---|---|"]
    for r in res.rows:
        lines.append("| " + " | ".join(_cell(x) for x in (
            r.label, r.show(r.baseline), r.show(r.candidate), r.change, r.limit, _MARK[r.status], r.note)) + " |")
    lines += ["", "Accuracy figures are the ONNX graph's, measured in onnxruntime against each report's own FP16 "
                  "reference on the same eval data. Host latency is onnxruntime on a CPU, indicative only."]
    if any(r.metric.startswith("device_") for r in res.rows):
        lines.append("The *on device* rows were measured by `dsedge bench --accuracy` on the device's own runtime "
                     "against the same FP16 reference; their KL covers the reference's top-64 ids plus the rest "
                     "(a lower bound of the full KL).")
    return "\n".join(lines) + "\n"
