"""`dsedge gate` on device-measured accuracy: an INT4 artifact benched with `dsedge bench --accuracy`
(here, onnxruntime: the same device-side code a release runs), gated through the real CLI."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from dsedge import deploy
from dsedge.cli import app
from dsedge.gate import load_gateable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def benched(built, tmp_path_factory):
    """-> (a copy of the INT4 RTN artifact with measured.accuracy, the artifact as built)."""
    a = built("qwen2-tiny", "rtn").path
    art = tmp_path_factory.mktemp("device-gate") / "art"
    shutil.copytree(a, art)
    deploy.bench(art, runtime="onnxruntime", accuracy=True, prompt_tokens=8, decode_tokens=2, runs=1, warmup=0)
    return art, a


def gate(*args):
    return CliRunner().invoke(app, ["gate", *map(str, args)])


def test_device_limits_gate_the_measured_figures(benched, tmp_path, monkeypatch):
    art, built = benched
    monkeypatch.chdir(tmp_path)          # no dsedge.yaml: limits from the command line only
    acc = json.loads((art / "report.json").read_text())["measured"]["accuracy"]
    ok = gate(art, "--baseline", built, "--max-device-kl", 2 * acc["kl"], "--min-device-top1", "90%", "--json")
    assert ok.exit_code == 0, ok.output
    rows = {r["metric"]: r for r in json.loads(ok.output)["rows"]}
    assert rows["device_kl"]["status"] == "pass" and rows["device_kl"]["candidate"] == acc["kl"]
    assert rows["device_top1_agreement"]["status"] == "pass" and "measured on this host" in rows["device_kl"]["note"]
    # the baseline was never benched: its device perplexity is missing, so that row cannot compare
    assert rows["device_perplexity"]["status"] == "skipped" and "bench ARTIFACT --accuracy" in rows["device_perplexity"]["note"]
    bad = gate(art, "--baseline", built, "--max-device-kl", acc["kl"] / 2)
    assert bad.exit_code == 1 and "on device" in bad.output


def test_device_rows_appear_only_where_measured(benched, tmp_path, monkeypatch):
    art, built = benched
    monkeypatch.chdir(tmp_path)
    plain = gate(built, "--baseline", built, "--json")
    assert plain.exit_code == 0 and not any(r["metric"].startswith("device_") for r in json.loads(plain.output)["rows"])
    asked = gate(built, "--baseline", built, "--max-device-kl", "0.01", "--json")
    row = {r["metric"]: r for r in json.loads(asked.output)["rows"]}["device_kl"]
    assert asked.exit_code == 0 and row["status"] == "skipped" and "not measured on a device" in row["note"]


def test_a_baseline_file_keeps_the_device_figures(benched, tmp_path, monkeypatch):
    art, _ = benched
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "baseline.json"
    assert gate(art, "--baseline", base, "--update-baseline").exit_code == 0
    g = load_gateable(base, "baseline")
    acc = json.loads((art / "report.json").read_text())["measured"]["accuracy"]
    assert g.metrics["device_perplexity"] == acc["perplexity"] and g.device and "this host" in g.device
    r = gate(art, "--baseline", base, "--max-device-ppl-increase", "0.1%", "--json")
    assert r.exit_code == 0, r.output
    assert {x["metric"]: x for x in json.loads(r.output)["rows"]}["device_perplexity"]["status"] == "pass"
    bad = json.loads(base.read_text())
    bad["metrics"]["device_kl"] = -1.0
    base.write_text(json.dumps(bad))
    r = gate(art, "--baseline", base)
    assert r.exit_code == 2 and "metrics.device_kl" in r.output
