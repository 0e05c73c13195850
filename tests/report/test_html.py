"""report.html and report.md of real builds: self-contained, the summary table first, then the
per-layer SQNR, per-token KL and host latency figures; `dsedge report` regenerates them."""
from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsedge import reference
from dsedge.cli import app
from dsedge.load import open_checkpoint
from dsedge.load.checkpoint import file_sha256
from dsedge.quantize.primitives import sqnr_db
from dsedge.quantize.rtn import quantize_weight
from dsedge.report import summary_rows

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_is_self_contained_with_summary_then_three_figures(built):
    res = built("qwen2-tiny", "rtn")
    html = (res.path / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "http://" not in html and "https://" not in html
    imgs = _images(html)
    assert len(imgs) == 3 and all(i.startswith(PNG) and len(i) > 5000 for i in imgs)
    # the summary table (the same rows the CLI prints) comes before the figures
    first_img = html.index("<img")
    for metric, _ in summary_rows(res.report)[:6]:
        assert 0 < html.index(f"<td>{metric}</td>") < first_img
    heads = re.findall(r"<h2>(.*?)</h2>", html)
    assert heads[:3] == ["Per-layer quantization error", "Per-token KL against FP16", "Host latency distribution"]
    for section in html.split("<h2>")[1:4]:  # each figure says what it shows and how it was measured
        assert re.search(r"<p>[^<]{80,}</p>", section) and "<img" in section
    assert "report.html" in res.manifest["files"]
    assert file_sha256(res.path / "report.html") == res.manifest["files"]["report.html"]["sha256"]


def test_per_layer_sqnr_is_recorded_for_every_quantized_linear(built):
    rtn, int8 = built("qwen2-tiny", "rtn").report, built("qwen2-tiny", "int8").report
    layers = {x["name"]: x for x in rtn["layers"]}
    assert len(layers) == rtn["quantization"]["quantized_linears"] and rtn["layers_note"] is None
    assert all(x["bits"] == 4 and x["group_size"] == 128 for x in layers.values())
    # recomputed here from the checkpoint, independently of the build
    ckpt = open_checkpoint(reference.checkpoint_path("qwen2-tiny"))
    name = "model.layers.1.mlp.down_proj"
    w = ckpt.tensor(f"{name}.weight").to(torch.float16).float()
    assert layers[name]["sqnr_db"] == pytest.approx(sqnr_db(w, quantize_weight(w, 4, 128, True).dequantize()), abs=1e-3)
    # 4 more bits: about 6 dB each, on every layer
    for x in int8["layers"]:
        assert x["sqnr_db"] - layers[x["name"]]["sqnr_db"] > 18, x["name"]
    md = (built("qwen2-tiny", "rtn").path / "report.md").read_text()
    worst = min(layers.values(), key=lambda x: x["sqnr_db"])
    assert "## Per-layer quantization error" in md and f"| {worst['name']} | {worst['sqnr_db']:.2f} |" in md


def test_latency_samples_and_kl_histogram_in_the_report(built):
    r = built("qwen2-tiny", "rtn").report
    lat = r["host_latency"]
    assert len(lat["decode_ms_samples"]) == 32 and len(lat["prefill_ms_samples"]) == lat["runs"]
    assert np.median(lat["decode_ms_samples"]) == pytest.approx(lat["decode_ms_median"], abs=1e-3)
    h = r["onnx"]["kl_histogram"]
    assert h["n"] == r["eval"]["windows"] * (r["eval"]["window_tokens"] - 1)
    assert sum(h["counts"]) + h["below"] + h["above"] == h["n"]


def test_fp16_report_says_why_there_is_no_sqnr(built):
    res = built("qwen2-tiny", "fp16")
    assert res.report["layers"] == [] and "FP16" in res.report["layers_note"]
    html = (res.path / "report.html").read_text()
    assert "Not available: no quantized linears (FP16 build)" in html and len(_images(html)) == 2


def test_dsedge_report_regenerates_md_and_html(built, tmp_path):
    src = built("qwen2-tiny", "rtn").path
    art = tmp_path / "a"
    shutil.copytree(src, art)
    (art / "report.html").unlink()
    (art / "report.md").write_text("stale")
    r = CliRunner().invoke(app, ["report", str(art)])
    assert r.exit_code == 0, r.output
    assert (art / "report.md").read_text() == (src / "report.md").read_text()
    assert len(_images((art / "report.html").read_text())) == 3
    manifest = json.loads((art / "manifest.json").read_text())
    for f in ("report.md", "report.html"):
        assert manifest["files"][f]["sha256"] == file_sha256(art / f)
    # a report from before per-layer / distribution data: still rendered, saying what is missing
    data = json.loads((art / "report.json").read_text())
    for k in ("layers", "layers_note"):
        data.pop(k)
    data["onnx"].pop("kl_histogram")
    data["host_latency"] = None
    (art / "report.json").write_text(json.dumps(data))
    r = CliRunner().invoke(app, ["report", str(art)])
    assert r.exit_code == 2 and "report.json is " in r.output and "changed after dsedge wrote it" in r.output
    manifest = json.loads((art / "manifest.json").read_text())   # as an older artifact's own manifest says
    manifest["files"]["report.json"] = {"sha256": file_sha256(art / "report.json"),
                                        "bytes": (art / "report.json").stat().st_size}
    (art / "manifest.json").write_text(json.dumps(manifest))
    r = CliRunner().invoke(app, ["report", str(art)])
    assert r.exit_code == 0, r.output
    html = (art / "report.html").read_text()
    assert len(_images(html)) == 0 and html.count("Not available:") == 3 and "older dsedge" in html
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "no report.json" in bad.output
