"""What the gate writes for CI: the Markdown summary appended (as $GITHUB_STEP_SUMMARY collects
every step's), JUnit times that were measured (or none), JSON, and a gate run without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from dsedge.cli import app

pytestmark = pytest.mark.slow
LOOSE = ["--max-kl", "0.05", "--min-top1", "0.9", "--max-ppl-increase", "5%"]


@pytest.fixture(scope="module")
def pair(built):
    return built("qwen2-tiny", "rtn"), built("qwen2-tiny", "fp16")


def gate(*args):
    return CliRunner().invoke(app, ["gate", *map(str, args)])


def test_summary_is_appended_to_what_the_file_holds(pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rtn, fp16 = pair
    summary = tmp_path / "step_summary.md"
    summary.write_text("## an earlier step's summary")      # no final newline: the gate's still starts a line
    for _ in range(2):
        r = gate(rtn.path, "--baseline", fp16.path, *LOOSE, "--summary", summary)
        assert r.exit_code == 0, r.output
    md = summary.read_text()
    assert md.startswith("## an earlier step's summary\n\n## ✅ dsedge gate passed")
    assert md.count("## ✅ dsedge gate passed") == 2


def test_junit_has_the_measured_suite_time_and_no_made_up_case_times(pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rtn, fp16 = pair
    junit = tmp_path / "gate.xml"
    r = gate(rtn.path, "--baseline", fp16.path, *LOOSE, "--junit", junit)
    assert r.exit_code == 0, r.output
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert float(suite.get("time")) > 0 and suite.get("time") == root.get("time")
    cases = suite.findall("testcase")
    assert cases and all(c.get("time") is None for c in cases)


def test_update_baseline_prints_json(pair, tmp_path):
    rtn, _ = pair
    base = tmp_path / "base.json"
    r = gate(rtn.path, "--baseline", base, "--update-baseline", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"baseline": str(base), "from": str(rtn.path)} and base.is_file()


def test_gate_does_not_import_torch(pair, tmp_path):
    rtn, fp16 = pair
    code = ("import sys\nfrom dsedge.cli import app\n"
            f"try:\n    app(['gate', {str(rtn.path)!r}, '--baseline', {str(fp16.path)!r}, '--json'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "assert not heavy, heavy\nprint('ok')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
