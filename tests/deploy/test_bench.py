"""dsedge bench here and over SSH: latency figures, energy per token from an INA3221 sysfs tree,
the artifact's report / budgets / manifest updated; the CLI's per-device table and exit code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dsedge import deploy
from dsedge.deploy.releases import artifact_id, files_to_ship

from .test_power import agx_orin

SMALL = {"prompt_tokens": 16, "decode_tokens": 8, "runs": 2, "warmup": 1}


def test_local_bench_records_measured_figures(artifacts, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(artifacts[0], art)
    sysfs = tmp_path / "sysfs"
    agx_orin(sysfs)                      # 15.18 W, constant
    b = deploy.bench(art, runtime="onnxruntime", power_root=str(sysfs), **SMALL)
    assert b["runtime"] == "onnxruntime" and b["onnxruntime_accuracy_level"] == 1
    assert b["decode_ms"]["n"] == 16 and 0 < b["decode_ms"]["median"] <= b["decode_ms"]["p90"] <= b["decode_ms"]["p99"]
    assert b["ttft_ms"]["n"] == 2 and b["decode_tokens_per_s"] == pytest.approx(1e3 / b["decode_ms"]["median"])
    p = b["power"]
    assert p["source"] == "ina3221" and p["avg_w"] == pytest.approx(15.18, rel=1e-3)
    # J/token = W x seconds per token; the decode windows include per-step overhead, so a bound
    assert p["decode_j_per_token"] == pytest.approx(15.18 * b["decode_ms"]["mean"] / 1e3, rel=0.5)
    report = json.loads((art / "report.json").read_text())
    assert report["measured"]["bench"]["decode_tokens_per_s"] == b["decode_tokens_per_s"]
    rows = {r["metric"]: r for r in report["budgets"]}
    for m in ("ttft_ms", "decode_tokens_per_s", "peak_memory_gb", "avg_power_w"):
        assert rows[m]["source"] == "measured", m
    assert rows["avg_power_w"]["value"] == pytest.approx(15.18, rel=1e-3) and rows["avg_power_w"]["status"] == "pass"
    assert rows["ttft_ms"]["value"] == pytest.approx(b["ttft_ms"]["median"], abs=1e-3)
    assert json.loads((art / "bench.json").read_text())["runtime"] == "onnxruntime"
    assert "measured" in (art / "report.md").read_text()
    files_to_ship(art)                   # the manifest was refreshed: the artifact still verifies


def test_bench_over_ssh_and_cli_table(sshd, artifacts, tmp_path):
    a, b = artifacts
    art = tmp_path / "art"
    shutil.copytree(a, art)
    root = tmp_path / "device"
    # fleet.yaml: two devices (two roots on the loopback sshd); the second's python cannot run the model
    bad_python = tmp_path / "python-no-site"
    bad_python.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bad_python.chmod(0o755)
    inv = tmp_path / "fleet.yaml"
    inv.write_text(f"defaults:\n  python: {sys.executable}\ndevices:\n"
                   f"  - {{address: '{sshd.address}', name: good, root: '{root}', runtime: onnxruntime}}\n"
                   f"  - {{address: '{sshd.address}', name: bad, root: '{tmp_path / 'dev2'}', python: '{bad_python}', "
                   "runtime: onnxruntime}\n")
    ssh = ["--known-hosts", str(sshd.known_hosts), "--identity", str(sshd.user_key)]
    r = subprocess.run([sys.executable, "-m", "dsedge", "flash", str(art), "--inventory", str(inv), "--json", *ssh],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    res = {x["device"]: x for x in json.loads(r.stdout)}
    assert res["good"]["ok"] and res["good"]["release"] == artifact_id(art) and res["good"]["runtime"] == "onnxruntime"
    assert not res["bad"]["ok"] and "smoke test" in res["bad"]["error"]
    assert "1 of 2 device(s) failed" in r.stderr and "runs the artifact's ONNX with onnxruntime" in r.stderr

    sysfs = tmp_path / "sysfs"
    agx_orin(sysfs)
    got = deploy.bench(art, sshd.address, root=str(root), python=sys.executable, known_hosts=sshd.known_hosts,
                       identity=sshd.user_key, power_root=str(sysfs), accuracy_level=4, **SMALL)
    assert got["where"].startswith(sshd.address) and artifact_id(a) in got["where"]
    assert got["onnxruntime_accuracy_level"] == 4     # reached the device side
    assert got["power"]["avg_w"] == pytest.approx(15.18, rel=1e-3)
    assert json.loads((art / "report.json").read_text())["measured"]["bench"]["where"] == got["where"]

    r = subprocess.run([sys.executable, "-m", "dsedge", "devices", "status", "-d", sshd.address, "--root", str(root),
                        "--python", sys.executable, *ssh], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    assert artifact_id(a) in r.stdout and "free memory" in r.stdout

    # the artifact changed (report, manifest): a device without it is told to flash it first
    r = subprocess.run([sys.executable, "-m", "dsedge", "bench", str(art), "-d", sshd.address, "--root", str(root),
                        "--python", sys.executable, *ssh], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "flash it first" in r.stderr


def test_accuracy_level_4_quantizes_activations(artifacts):
    """--accuracy-level 4 runs the int4 weights with INT8 activations: other logits than level 1
    (the build's checks), close to them; an unknown level is refused before any work."""
    import numpy as np

    from dsedge.deploy.device.runtime import OrtDecoder
    from dsedge.errors import UsageError

    ids = np.arange(1, 17, dtype=np.int64)[None]
    l1, _ = OrtDecoder(artifacts[0], accuracy_level=1).run(ids)
    l4, _ = OrtDecoder(artifacts[0], accuracy_level=4).run(ids)
    diff = float(np.abs(l4 - l1).max())
    assert 0 < diff < 0.1 * float(np.abs(l1).max())
    with pytest.raises(UsageError, match="accuracy-level 7"):
        deploy.bench(artifacts[0], runtime="onnxruntime", accuracy_level=7)
