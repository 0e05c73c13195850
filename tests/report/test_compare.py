"""`dsedge compare` output from real build reports: rows, rich table, CSV, JSON, Pareto plot."""
from __future__ import annotations

import copy
import csv
import json

import matplotlib.image
import pytest
from rich.console import Console

import dsedge
from dsedge.quantize import config_from_options
from dsedge.report.compare import (COLUMNS, compare_rows, loss_metric, loss_metrics, options_note, pareto_figure,
                                   pareto_front, point_labels, print_table, write_compare)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two real builds of the reference checkpoint: FP16 without latency, INT4 RTN with it."""
    out = tmp_path_factory.mktemp("compare")
    fp16 = dsedge.build(None, quant=config_from_options("fp16"), output=out / "fp16", latency=False)
    rtn = dsedge.build(None, quant=config_from_options("rtn", 4), output=out / "rtn", latency=True)
    return {"fp16": fp16.report, "rtn": rtn.report}


def test_rows_read_the_reports(reports):
    fp16, rtn = compare_rows([reports["fp16"], reports["rtn"]])
    assert set(COLUMNS) <= set(fp16)
    for row, r in ((fp16, reports["fp16"]), (rtn, reports["rtn"])):
        assert row["size_mb"] == r["size_mb"] and row["perplexity"] == r["onnx"]["perplexity"]
        assert row["ppl_change_pct"] == r["ppl_change_pct"] and row["kl"] == r["onnx"]["kl"]
        assert row["top1_agreement"] == r["onnx"]["top1_agreement"]
        assert row["task_accuracy"] == r["onnx"]["task_accuracy"]
        assert row["quantize_seconds"] == r["quantization"]["seconds"]
        assert row["label"] == r["quantization"]["label"] and row["model"] == r["model"]["name"]
    assert (fp16["method"], fp16["bits"], fp16["group_size"], fp16["backend"]) == ("fp16", 16, None, "dsedge")
    assert (rtn["method"], rtn["bits"], rtn["group_size"]) == ("rtn", 4, 128)
    assert rtn["size_mb"] < fp16["size_mb"] and rtn["kl"] > fp16["kl"]
    assert fp16["decode_tokens_per_s"] is None                          # built with latency=False
    assert rtn["decode_tokens_per_s"] == reports["rtn"]["host_latency"]["decode_tokens_per_s"] > 0


def _partial(report: dict) -> dict:
    """A report of a method that measured less: no accuracy, no latency, no size, another backend."""
    r = copy.deepcopy(report)
    r.update(onnx=None, ppl_change_pct=None, host_latency=None)
    del r["size_mb"]
    r["quantization"]["backend"] = "gptqmodel"
    return r


def test_missing_figures_are_blank(reports, tmp_path):
    rows = compare_rows([reports["rtn"], _partial(reports["rtn"])])
    part = rows[1]
    assert part["backend"] == "gptqmodel"
    assert all(part[k] is None for k in ("size_mb", "perplexity", "ppl_change_pct", "kl", "top1_agreement",
                                         "task_accuracy", "decode_tokens_per_s"))
    console = Console(record=True, width=250)
    print_table(rows, console)
    lines = [ln for ln in console.export_text().splitlines() if "gptqmodel" in ln]
    assert len(lines) == 1 and "None" not in lines[0] and "n/a" not in lines[0]
    paths = write_compare(rows, tmp_path)
    got = list(csv.DictReader(paths["csv"].open()))
    assert got[1]["perplexity"] == "" and got[1]["size_mb"] == "" and got[1]["backend"] == "gptqmodel"
    assert json.loads(paths["json"].read_text())["rows"][1]["kl"] is None
    assert point_labels(rows) == ["rtn dsedge", "rtn gptqmodel"]       # same method: backend tells apart


def test_table_prints_every_row(reports):
    rows = compare_rows([reports["fp16"], reports["rtn"]])
    console = Console(record=True, width=250)
    print_table(rows, console)
    text = console.export_text()
    assert all(h in text for h in COLUMNS.values())
    assert f"{rows[1]['perplexity']:.4f}" in text and f"{rows[1]['ppl_change_pct']:+.2f}" in text
    assert f"{rows[1]['top1_agreement']:.1%}" in text and rows[0]["model"] in text


def test_write_compare_files_and_plot(reports, tmp_path):
    rows = compare_rows([reports["fp16"], reports["rtn"]])
    paths = write_compare(rows, tmp_path / "out")
    assert set(paths) == {"csv", "json", "png"} and all(p.parent == tmp_path / "out" for p in paths.values())
    got = list(csv.DictReader(paths["csv"].open()))
    assert [g["method"] for g in got] == ["fp16", "rtn"]
    assert float(got[1]["ppl_change_pct"]) == rows[1]["ppl_change_pct"] and got[0]["decode_tokens_per_s"] == ""
    doc = json.loads(paths["json"].read_text())
    assert [{k: r[k] for k in COLUMNS} for r in doc["rows"]] == [{k: r[k] for k in COLUMNS} for r in rows]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(paths["png"])
    assert img.shape[1] > img.shape[0] > 100 and img[..., :3].std() > 0.01   # wide, two panels, not blank
    fig = pareto_figure(rows)
    # KL is the main (top) row, ΔPPL the second: size and latency columns in each
    assert len(fig.axes) == 4 and loss_metrics(rows) == ["kl", "ppl_change_pct"] and loss_metric(rows) == "kl"
    assert [ax.get_ylabel().startswith("KL") for ax in fig.axes] == [True, True, False, False]
    assert ["ΔPPL" in ax.get_ylabel() for ax in fig.axes] == [False, False, True, True]
    kl_size = fig.axes[0].collections[-1].get_offsets()[0]              # the rtn point, in data units
    assert tuple(kl_size) == (rows[1]["size_mb"], rows[1]["kl"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["fp16", "rtn"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["rtn"]       # fp16 has no latency: left out, noted
    assert any("fp16" in t.get_text() and "not measured" in t.get_text() for t in _notes(fig))


def _notes(fig):
    return [t for f in [fig, *fig.subfigs] for t in f.texts]


def test_latency_panel_skipped_when_not_measured(reports, tmp_path):
    rows = compare_rows([reports["fp16"], {**reports["rtn"], "host_latency": None}])
    fig = pareto_figure(rows)
    assert [ax.get_xlabel() for ax in fig.axes] == ["size (MB)", "size (MB)"]       # KL, then ΔPPL
    assert any("latency panel skipped" in t.get_text() for t in _notes(fig))
    assert write_compare(rows, tmp_path)["png"].stat().st_size > 0


def test_kl_is_the_loss_axis_without_ppl(reports):
    rows = compare_rows([{**r, "ppl_change_pct": None} for r in (reports["fp16"], reports["rtn"])])
    assert loss_metric(rows) == "kl"
    assert [ax.get_ylabel().startswith("KL") for ax in pareto_figure(rows).axes] == [True, True]


def test_ppl_is_the_only_row_without_kl(reports):
    rows = compare_rows([reports["fp16"], reports["rtn"]])
    for r in rows:
        r["kl"] = None
    assert loss_metric(rows) == "ppl_change_pct"
    assert ["ΔPPL" in ax.get_ylabel() for ax in pareto_figure(rows).axes] == [True, True]


def test_pareto_draws_without_layout_warnings(reports, tmp_path):
    import warnings

    rows = compare_rows([reports["fp16"], reports["rtn"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_compare(rows, tmp_path)


def test_options_note_names_who_took_bits(reports):
    rows = compare_rows([reports["fp16"], reports["rtn"]])
    assert options_note(rows) is None
    rows[1]["options"] = "--bits 4"
    assert options_note(rows) == "--bits 4 applied to rtn; fp16 (16-bit) keep their own"
    console = Console(record=True, width=250)
    print_table(rows, console)
    assert "--bits 4 applied to rtn" in console.export_text()


def test_pareto_front():
    pts = [(4.0, 1.0), (1.0, 5.0), (3.0, 4.0), (2.0, 3.0), (5.0, 1.0)]
    assert pareto_front(pts) == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]


@pytest.mark.slow
def test_cli_compare_writes_table_files_and_plot_in_one_command(tmp_path):
    """`dsedge compare` end to end: two methods built through the same pipeline, one table."""
    from typer.testing import CliRunner

    from dsedge.cli import app

    out = tmp_path / "cmp"
    r = CliRunner().invoke(app, ["compare", "--methods", "fp16,rtn", "--bits", "4", "--no-latency", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "fp16" in r.output and "rtn-w4-g128" in r.output
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["fp16", "rtn"]
    assert (out / "compare.csv").is_file() and matplotlib.image.imread(out / "pareto.png").shape[0] > 100
    assert (out / "fp16" / "manifest.json").is_file() and (out / "rtn-w4-g128" / "manifest.json").is_file()


def test_cli_compare_names_a_backend_the_method_does_not_take(tmp_path):
    from typer.testing import CliRunner

    from dsedge.cli import app

    r = CliRunner().invoke(app, ["compare", "--methods", "rtn:gptqmodel,fp16", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--backend is not an option of method rtn" in r.output, r.output
    r = CliRunner().invoke(app, ["compare", "--methods", "gptq:autogptq", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--backend autogptq is not supported" in r.output, r.output


@pytest.mark.slow
def test_cli_compare_bits_go_only_to_methods_that_take_them(tmp_path):
    """`--bits 4` with smoothquant (W8A8 only) and fp16 in the list: rtn takes it, the others keep
    their own widths, and the output and compare.json say which took it."""
    from typer.testing import CliRunner

    from dsedge.cli import app

    out = tmp_path / "cmp"
    r = CliRunner().invoke(app, ["compare", "--methods", "fp16,smoothquant,rtn", "--bits", "4", "--no-latency",
                                 "-o", str(out)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "compare.json").read_text())
    got = {row["method"]: (row["bits"], row["options"]) for row in doc["rows"]}
    assert got == {"fp16": (16, None), "smoothquant": (8, None), "rtn": (4, "--bits 4")}
    note = "--bits 4 applied to rtn; fp16 (16-bit), smoothquant (8-bit) keep their own"
    assert doc["options_note"] == note and note in " ".join(r.output.split())


def test_int8_kv_cache_builds_get_a_cache_kl_column(reports, tmp_path):
    kv = {"dtype": "int8", "short": {"kl": 2.5e-4}, "long": {"kl": 5e-3}}
    rows = compare_rows([reports["fp16"], {**reports["rtn"], "kv_cache": kv}])
    assert rows[0]["kv_cache"] == "fp16" and rows[0]["kv_cache_kl"] is None
    assert rows[1]["kv_cache"] == "int8" and rows[1]["kv_cache_kl"] == 2.5e-4
    console = Console(record=True, width=250)
    print_table(rows, console)
    text = console.export_text()
    assert "cache KL" in text and "0.00025" in text
    plain = Console(record=True, width=250)
    print_table(compare_rows([reports["fp16"], reports["rtn"]]), plain)
    assert "cache KL" not in plain.export_text()
    got = list(csv.DictReader(write_compare(rows, tmp_path)["csv"].open()))
    assert got[1]["kv_cache"] == "int8" and float(got[1]["kv_cache_kl"]) == 2.5e-4
