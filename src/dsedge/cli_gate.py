"""`dsedge gate` and `dsedge report`: commands on dsedge.cli_common.app (parsing and rendering only)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli_common import _run, app, console, out

_STYLE = {"pass": "[green]pass[/green]", "fail": "[bold red]FAIL[/bold red]", "skipped": "[dim]skipped[/dim]"}


@app.command()
def gate(
    candidate: Path = typer.Argument(..., help="Artifact folder, its report.json, or a baseline file."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", "-b", help="Artifact folder, report.json or baseline file (default: gate.baseline in dsedge.yaml)."),
    max_ppl_increase: Optional[str] = typer.Option(None, "--max-ppl-increase", help="Perplexity rise allowed over the baseline: '1%' relative (default) or absolute; 'none' to drop."),
    max_kl: Optional[str] = typer.Option(None, "--max-kl", help="Highest KL vs FP16 (nats/token) the candidate may have."),
    min_top1: Optional[str] = typer.Option(None, "--min-top1", help="Lowest top-1 agreement vs FP16 (0.95 or 95%)."),
    min_task_acc: Optional[str] = typer.Option(None, "--min-task-acc", help="Lowest task accuracy (0.8 or 80%)."),
    max_latency_increase: Optional[str] = typer.Option(None, "--max-latency-increase", help="Host (onnxruntime CPU) median latency rise allowed: '10%' or ms."),
    max_size_increase: Optional[str] = typer.Option(None, "--max-size-increase", help="Size rise allowed: '5%' or MB."),
    max_device_ppl_increase: Optional[str] = typer.Option(None, "--max-device-ppl-increase", help="Device-measured (dsedge bench --accuracy) perplexity rise allowed over the baseline's: '1%' or absolute."),
    max_device_kl: Optional[str] = typer.Option(None, "--max-device-kl", help="Highest device-measured KL vs FP16 (top-64 + rest, nats/token)."),
    min_device_top1: Optional[str] = typer.Option(None, "--min-device-top1", help="Lowest device-measured top-1 agreement vs FP16 (0.95 or 95%)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML (one test case per metric) here."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="Append the Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY; created if missing)."),
    update: bool = typer.Option(False, "--update-baseline", help="Write the candidate as the new baseline file instead of gating."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of the table."),
):
    """Compare a candidate build with a baseline; exit 1 on a regression, 2 when they cannot be compared."""
    def go():
        from . import api

        if update:
            path = api.update_baseline(candidate, baseline)
            if as_json:
                out.print_json(json.dumps({"baseline": str(path), "from": str(candidate)}))
            else:
                out.print(f"baseline written: {path} (from {candidate})", highlight=False)
            return
        thresholds = dict(max_ppl_increase=max_ppl_increase, max_kl=max_kl, min_top1=min_top1,
                          min_task_acc=min_task_acc, max_latency_increase=max_latency_increase,
                          max_size_increase=max_size_increase, max_device_ppl_increase=max_device_ppl_increase,
                          max_device_kl=max_device_kl, min_device_top1=min_device_top1)
        res = api.gate(candidate, baseline, thresholds, junit=junit, summary=summary)
        if as_json:
            out.print_json(json.dumps(res.to_dict()))
        else:
            _print_table(res)
        for what, p in (("JUnit XML", junit), ("summary", summary)):
            if p is not None:
                console.print(f"{what}: {p}", highlight=False)
        if not res.passed:
            console.print(f"[red]regression:[/red] {', '.join(r.label for r in res.failures)}", highlight=False)
            raise typer.Exit(1)

    _run(go)


def _print_table(res) -> None:
    from .gate.compare import HOST

    table = Table(title=f"dsedge gate: {'passed' if res.passed else 'FAILED'}",
                  caption=f"candidate {res.candidate.path} ({res.candidate.label})\n"
                          f"baseline  {res.baseline.path} ({res.baseline.label})\n"
                          f"latency: {HOST}", caption_justify="left")
    for col in ("metric", "baseline", "candidate", "change", "limit", "result", "note"):
        table.add_column(col, overflow="fold")
    for r in res.rows:
        table.add_row(r.label, r.show(r.baseline), r.show(r.candidate), r.change, r.limit, _STYLE[r.status], r.note)
    out.print(table)


@app.command()
def report(artifact: Path = typer.Argument(..., help="Artifact folder written by dsedge build."),
           as_json: bool = typer.Option(False, "--json", help="Print the files written as JSON.")):
    """Regenerate an artifact's report.md and report.html (figures embedded) from its report.json."""
    def go():
        from . import api

        paths = api.report(artifact)
        if as_json:
            out.print_json(json.dumps({k: str(p) for k, p in paths.items()}))
            return
        out.print("written: " + ", ".join(str(p) for p in paths.values()), highlight=False)

    _run(go)
