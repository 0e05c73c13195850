"""dsedge bench --accuracy: the build's eval windows through the device's own runtime (a real sshd
on loopback standing in for the device, onnxruntime there), scored on the host against the FP16
reference summary the artifact carries (top-64 ids + rest); a changed file on the device is
refused; an artifact without the summary gets the error that says how to get one."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dsedge import deploy
from dsedge.check.device_accuracy import REFERENCE_FILE, WINDOWS_FILE, score, summarize
from dsedge.deploy.device.accuracy import score_rows
from dsedge.deploy.errors import DeviceError
from dsedge.deploy.releases import artifact_id, files_to_ship

SMALL = {"prompt_tokens": 16, "decode_tokens": 4, "runs": 1, "warmup": 0}


def _log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _scored(ref_logits, dev_logits, targets, k):
    """score() over one window's (T, V) logits, through the same two functions the build and the device use."""
    ref = {n: a[None] for n, a in summarize(ref_logits, targets, k).items()}
    ref["scored"] = np.ones((1, len(targets)), bool)
    dev = {n: a[None] for n, a in score_rows(dev_logits, targets, ref["top_ids"][0]).items()}
    return score(ref, dev)


def test_top_k_kl_is_a_lower_bound_and_exact_with_the_whole_vocabulary():
    rng = np.random.default_rng(0)
    t, v = 40, 300
    ref = (3 * rng.standard_normal((t, v))).astype(np.float32)
    dev = ref + (0.3 * rng.standard_normal((t, v))).astype(np.float32)
    targets = rng.integers(0, v, t)
    lp, lq = _log_softmax(ref), _log_softmax(dev)
    full = float((np.exp(lp) * (lp - lq)).sum(-1).mean())
    kls = [_scored(ref, dev, targets, k)["kl"] for k in (8, 64, v)]
    assert kls[0] < kls[1] < full and kls[1] > 0.5 * full          # more ids, closer from below
    assert kls[2] == pytest.approx(full, rel=1e-3)                   # every id: the full KL (FP16 log-probs)
    s = _scored(ref, dev, targets, 64)
    assert s["perplexity"] == pytest.approx(float(np.exp(-lq[np.arange(t), targets].mean())), rel=1e-6)
    assert s["top1_agreement"] == float((lp.argmax(-1) == lq.argmax(-1)).mean())
    assert _scored(ref, ref, targets, 64)["kl"] < 1e-6               # the reference against itself


def test_the_build_stores_a_small_reference_in_the_manifest(artifacts):
    a = artifacts[0]
    report = json.loads((a / "report.json").read_text())
    entry = report["accuracy_reference"]
    files = json.loads((a / "manifest.json").read_text())["files"]
    assert entry["windows"] == WINDOWS_FILE in files and entry["reference"] == REFERENCE_FILE in files
    windows = np.load(a / WINDOWS_FILE)
    assert windows.dtype == np.int64 and windows.shape == (report["eval"]["windows"], report["eval"]["window_tokens"])
    with np.load(a / REFERENCE_FILE) as z:
        assert z["top_ids"].shape == (*windows.shape[:1], windows.shape[1] - 1, 64) and z["top_ids"].dtype == np.int32
        assert z["top_logprobs"].dtype == np.float16
        # 6 bytes per id and position whatever the vocabulary: 32 x 127 x 64 positions are 1.6 MB at 152k too
        raw = sum(z[n].nbytes for n in z.files)
        ref_ppl = float(np.exp(-z["target_logprob"].astype(np.float64).mean()))
    assert raw < 2e6 and entry["bytes"] < raw
    assert ref_ppl == pytest.approx(report["fp16_reference"]["perplexity"], rel=1e-6)


def _flash(sshd, art, root):
    res = deploy.flash(art, [sshd.address], runtime="onnxruntime", **sshd.kwargs(root))
    assert res[0].ok, res[0].error
    return res[0].release


def test_accuracy_measured_on_the_device(sshd, artifacts, tmp_path):
    art, root = tmp_path / "art", tmp_path / "device"
    shutil.copytree(artifacts[0], art)
    rid = _flash(sshd, art, root)
    build = json.loads((art / "report.json").read_text())
    r = subprocess.run([sys.executable, "-m", "dsedge", "bench", str(art), "-d", sshd.address, "--accuracy",
                        "--runtime", "onnxruntime", "--root", str(root), "--python", sys.executable,
                        "--known-hosts", str(sshd.known_hosts), "--identity", str(sshd.user_key),
                        *[a for k, v in SMALL.items() for a in (f"--{k.replace('_', '-')}", str(v))]],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    assert "KL vs FP16 (top-64 + rest)" in r.stdout and "a lower bound" in r.stdout
    report = json.loads((art / "report.json").read_text())
    acc = report["measured"]["accuracy"]
    assert acc["source"] == "measured on device" and rid in acc["where"] and acc["runtime"] == "onnxruntime"
    assert acc["scored_positions"] == build["onnx"]["kl_histogram"]["n"]
    # the same graph in the same runtime on the same windows: the build's figures, to float round-off
    assert acc["perplexity"] == pytest.approx(build["onnx"]["perplexity"], rel=1e-6)
    assert acc["fp16_reference_perplexity"] == pytest.approx(build["fp16_reference"]["perplexity"], rel=1e-6)
    assert acc["top1_agreement"] == pytest.approx(build["onnx"]["top1_agreement"], abs=2 / acc["scored_positions"])
    # top-64 + rest: below the build's full KL over the whole vocabulary, and close to it
    full = build["onnx"]["kl"]
    print(f"\ndevice KL (top-64 + rest) {acc['kl']:.6g}, build KL (full) {full:.6g}: {100 * (1 - acc['kl'] / full):.2f} % "
          f"below; perplexity device {acc['perplexity']:.6f}, build {build['onnx']['perplexity']:.6f}")
    assert 0.95 * full < acc["kl"] <= full
    rows = {b["metric"]: b for b in report["budgets"]}
    assert rows["max_ppl_increase_pct"]["source"] == "measured" and "--accuracy" in rows["max_ppl_increase_pct"]["how"]
    assert "Accuracy measured on device" in (art / "report.md").read_text()
    assert "Accuracy measured on device" in (art / "report.html").read_text()
    files_to_ship(art)                   # the manifest was refreshed: the artifact still verifies


def test_a_changed_reference_on_the_device_is_refused(sshd, artifacts, tmp_path):
    art, root = tmp_path / "art", tmp_path / "device"
    shutil.copytree(artifacts[0], art)
    rid = _flash(sshd, art, root)
    on_device = root / "releases" / rid / REFERENCE_FILE
    data = bytearray(on_device.read_bytes())
    data[len(data) // 2] ^= 1
    on_device.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()}
    with pytest.raises(DeviceError, match=r"refused the accuracy run.*reference\.npz does not match its sha256") as e:
        deploy.bench(art, sshd.address, runtime="onnxruntime", accuracy=True, **sshd.kwargs(root), **SMALL)
    assert "dsedge flash" in e.value.fix
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()} == before    # nothing recorded
    assert artifact_id(art) == rid


def test_an_artifact_without_the_reference_gets_the_fix(tmp_path):
    """A truncated check computes no FP16 reference: bench --accuracy says so and how to get one,
    before running anything, and writes nothing."""
    art = tmp_path / "trunc"
    r = subprocess.run([sys.executable, "-m", "dsedge", "build", "--target", "orin", "--bits", "4", "--check",
                        "truncated", "--no-latency", "-o", str(art)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()}
    r = subprocess.run([sys.executable, "-m", "dsedge", "bench", str(art), "--accuracy", "--runtime", "onnxruntime"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "no FP16 reference for an accuracy run" in r.stderr and "first 2 layers" in r.stderr
    assert "fix:" in r.stderr and "--check full" in r.stderr and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()} == before
