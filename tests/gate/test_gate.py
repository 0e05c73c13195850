"""`dsedge gate` on real artifacts of the reference checkpoint (FP16 and INT4 RTN, shared with
tests/test_build.py through the `built` fixture), through the real CLI for exit codes."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from dsedge.cli import app
from dsedge.gate import METRICS, load_gateable, run_gate
from dsedge.gate.thresholds import Thresholds

pytestmark = pytest.mark.slow
# tight: what an FP16 build meets and INT4 RTN cannot (KL 10x-1000x above FP16's on the tiny model);
# loose: what any sane 4-bit build meets
TIGHT = ["--max-kl", "1e-4", "--min-top1", "99%", "--max-ppl-increase", "0.5%"]
LOOSE = ["--max-kl", "0.05", "--min-top1", "0.9", "--max-ppl-increase", "5%", "--min-task-acc", "50%"]


@pytest.fixture(scope="module")
def fp16(built):
    return built("qwen2-tiny", "fp16")


@pytest.fixture(scope="module")
def rtn(built):
    return built("qwen2-tiny", "rtn")


def gate(*args, cwd=None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, ["gate", *map(str, args)])


def test_int4_fails_a_tight_gate_that_fp16_passes(fp16, rtn, tmp_path, monkeypatch):
    junit = tmp_path / "out" / "gate.xml"
    summary = tmp_path / "summary.md"
    monkeypatch.chdir(tmp_path)  # no dsedge.yaml here: thresholds from the command line only
    same = gate(fp16.path, "--baseline", fp16.path, *TIGHT)
    assert same.exit_code == 0, same.output
    r = gate(rtn.path, "--baseline", fp16.path, *TIGHT, "--junit", junit, "--summary", summary)
    assert r.exit_code == 1, r.output
    assert "regression" in r.output and "KL vs FP16" in r.output
    # what failed is what the reports say, not a fixed list
    on = rtn.report["onnx"]
    expected = {"kl"} if on["kl"] > 1e-4 else set()
    expected |= {"top1_agreement"} if on["top1_agreement"] < 0.99 else set()
    expected |= {"perplexity"} if on["perplexity"] > 1.005 * fp16.report["onnx"]["perplexity"] else set()
    assert expected, "INT4 RTN should be measurably worse than FP16 on the reference checkpoint"
    # JUnit: parses, one test case per gated metric, failures where the table says
    root = ET.parse(junit).getroot()
    cases = root.findall("./testsuite/testcase")
    names = [c.get("name") for c in cases]
    assert len(names) == len(set(names)) == 7 and set(names) <= set(METRICS)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == expected
    assert int(root.get("failures")) == len(failed) and int(root.get("tests")) == 7
    assert {c.get("name") for c in cases if c.find("skipped") is not None} >= {"size_mb", "decode_ms_median"}
    md = summary.read_text()
    assert md.startswith("## ❌ dsedge gate failed") and "| KL vs FP16 (nats/token) |" in md
    assert "❌ **fail**" in md and "onnxruntime" in md


def test_int4_passes_a_loose_gate(fp16, rtn, tmp_path, monkeypatch):
    junit = tmp_path / "gate.xml"
    r = gate(rtn.path / "report.json", "--baseline", fp16.path, *LOOSE, "--max-size-increase", "0%", "--junit", junit,
             cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    assert "passed" in r.output and "onnxruntime CPU" in r.output
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0"
    statuses = {c.get("name"): ("skipped" if c.find("skipped") is not None else "pass")
                for c in root.iter("testcase")}
    # every metric both reports hold and a limit was given for was actually compared
    assert {k for k, v in statuses.items() if v == "pass"} == {"perplexity", "kl", "top1_agreement",
                                                               "task_accuracy", "size_mb"}


def test_size_and_latency_increase_are_against_the_baseline(fp16, rtn):
    """INT4 is smaller than FP16: reversed, FP16 against an INT4 baseline breaks a size limit."""
    res = run_gate(load_gateable(fp16.path), load_gateable(rtn.path),
                   Thresholds(max_ppl_increase=None, max_size_increase=_limit("10%"), max_latency_increase=_limit("1000%")))
    rows = {r.metric: r for r in res.rows}
    assert rows["size_mb"].status == "fail" and rows["size_mb"].candidate > 1.1 * rows["size_mb"].baseline
    assert rows["decode_ms_median"].status == "pass" and rows["prefill_ms_median"].status == "pass"
    assert rows["perplexity"].status == "skipped" and "not gated" in rows["perplexity"].note


def _limit(text):
    from dsedge.gate.thresholds import _parse

    return _parse("max_size_increase", text, "test")


def _edited_report(src, dst, edit):
    dst.mkdir()
    r = json.loads((src / "report.json").read_text())
    edit(r)
    (dst / "report.json").write_text(json.dumps(r))
    return dst / "report.json"


def test_different_eval_data_is_a_usage_error_naming_both(fp16, rtn, tmp_path, monkeypatch):
    other = _edited_report(rtn.path, tmp_path / "other", lambda r: r["eval"].update(sha256="f" * 64, source="mine.txt"))
    r = gate(other, "--baseline", fp16.path, cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 2, r.output
    assert "different eval data" in r.output and "f" * 64 in r.output
    assert fp16.report["eval"]["sha256"] in r.output and "fix:" in r.output


def test_different_source_model_is_a_usage_error(built, fp16, tmp_path, monkeypatch):
    llama = built("llama-tiny", "rtn")  # also built by tests/test_build.py
    r = gate(llama.path, "--baseline", fp16.path, cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 2, r.output
    assert "different source models" in r.output
    assert llama.manifest["source"]["sha256"] in r.output and fp16.manifest["source"]["sha256"] in r.output


@pytest.mark.parametrize("args,match", [
    (["missing-artifact", "--baseline", "{fp16}"], "candidate missing-artifact does not exist"),
    (["{rtn}", "--baseline", "nope.json"], "baseline nope.json does not exist"),
    (["{rtn}"], "no baseline given"),
    (["{rtn}", "--baseline", "{fp16}", "--max-kl", "lots"], "--max-kl: max_kl = 'lots' is not a number"),
    (["{rtn}", "--baseline", "{fp16}", "--min-top1", "1.5"], "above 1"),
    (["{rtn}", "--baseline", "{fp16}/config.json"], "neither a dsedge report.json nor a baseline file"),
])
def test_usage_errors_exit_2(fp16, rtn, tmp_path, monkeypatch, args, match):
    r = gate(*[a.format(fp16=fp16.path, rtn=rtn.path) for a in args], cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 2, r.output
    assert match in " ".join(r.output.split()) and "Traceback" not in r.output


def test_missing_metrics_are_skipped_with_the_reason(fp16, rtn, tmp_path, monkeypatch):
    no_lat = _edited_report(rtn.path, tmp_path / "nolat", lambda r: r.update(host_latency=None))
    junit = tmp_path / "g.xml"
    r = gate(no_lat, "--baseline", fp16.path, "--max-latency-increase", "10%", "--junit", junit,
             cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    case = ET.parse(junit).getroot().find(".//testcase[@name='decode_ms_median']")
    assert "host latency was not measured" in case.find("skipped").get("message")


def test_update_baseline_then_gate_against_it(fp16, rtn, tmp_path, monkeypatch):
    base = tmp_path / "ci" / "dsedge-baseline.json"      # ci/ is created, as --junit's folder is
    r = gate(rtn.path, "--baseline", base, "--update-baseline", cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    data = json.loads(base.read_text())
    assert data["eval"]["sha256"] == rtn.report["eval"]["sha256"]
    assert data["source"]["sha256"] == rtn.manifest["source"]["sha256"]
    assert data["metrics"]["kl"] == rtn.report["onnx"]["kl"]
    # the same build against its own baseline passes even a tight gate on the figures it recorded
    r = gate(rtn.path, "--baseline", base, "--max-ppl-increase", "0%", "--max-size-increase", "0",
             cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    # dsedge.yaml: thresholds and the baseline path; the command line wins over it
    (tmp_path / "dsedge.yaml").write_text("gate:\n  baseline: ci/dsedge-baseline.json\n  max_kl: 1e-6\n")
    assert gate(rtn.path, cwd=tmp_path, monkeypatch=monkeypatch).exit_code == 1
    assert gate(rtn.path, "--max-kl", "none", cwd=tmp_path, monkeypatch=monkeypatch).exit_code == 0
    # an FP16 candidate against the INT4 baseline: same eval data and model, so it is compared
    assert gate(fp16.path, "--max-kl", "0.1", cwd=tmp_path, monkeypatch=monkeypatch).exit_code == 0


def test_unknown_dsedge_yaml_key_names_file_and_key(rtn, tmp_path, monkeypatch):
    (tmp_path / "dsedge.yaml").write_text("budgets:\n  ttft_ms: 400\ngate:\n  max_kll: 0.1\n")
    r = gate(rtn.path, "--baseline", rtn.path, cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 2
    assert "dsedge.yaml: unknown key gate.max_kll" in " ".join(r.output.split())


def test_the_gate_verifies_the_artifact_against_its_manifest(rtn, tmp_path, monkeypatch):
    """100 KB of model.onnx zeroed after the build: exit 2 naming the file, not a pass."""
    art = tmp_path / "art"
    shutil.copytree(rtn.path, art)
    with open(art / "model.onnx", "r+b") as f:
        f.seek(1000)
        f.write(bytes(100_000))
    r = gate(art, "--baseline", rtn.path, *LOOSE)
    assert r.exit_code == 2 and "model.onnx does not match its sha256 in manifest.json" in r.output, r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["report", str(art)])
    assert r.exit_code == 2 and "model.onnx" in r.output


@pytest.mark.parametrize("edit,field", [
    (lambda r: r.update(onnx=[1, 2]), "onnx is a list"),
    (lambda r: r["onnx"].update(perplexity="12.5"), "onnx.perplexity is '12.5', not a perplexity > 0"),
    (lambda r: r["onnx"].update(perplexity=-3.0), "onnx.perplexity is -3.0"),
    (lambda r: r["onnx"].update(kl=float("nan")), "onnx.kl is nan, not a KL divergence >= 0"),
    (lambda r: r["onnx"].update(top1_agreement=1.5), "onnx.top1_agreement is 1.5, not a share in [0, 1]"),
    (lambda r: r.update(source=["x"]), "source is a list"),
])
def test_malformed_report_values_are_usage_errors(rtn, tmp_path, monkeypatch, edit, field):
    """A report.json (outside its artifact, so no manifest to catch the edit) whose values do not
    mean what they must: exit 2 naming the field, never a traceback (exit 1, read as a regression)."""
    r = json.loads((rtn.path / "report.json").read_text())
    edit(r)
    f = tmp_path / "report.json"
    f.write_text(json.dumps(r))
    res = gate(f, "--baseline", rtn.path, *LOOSE)
    assert res.exit_code == 2 and field in res.output, res.output
    assert "Traceback" not in res.output


def test_a_baseline_whose_metrics_are_a_list_is_a_usage_error(rtn, tmp_path):
    b = tmp_path / "base.json"
    assert gate(rtn.path, "--baseline", b, "--update-baseline").exit_code == 0
    data = json.loads(b.read_text())
    data["metrics"] = [1, 2]
    b.write_text(json.dumps(data))
    r = gate(rtn.path, "--baseline", b, *LOOSE)
    assert r.exit_code == 2 and "metrics is a list, not an object" in r.output, r.output
