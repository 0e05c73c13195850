"""model.onnx says what built it: dsedge version, method, bits / group, source sha256, target (its
metadata_props), also when the export is reused from the stage cache by a build for another target."""
from __future__ import annotations

import json

import onnx
import pytest

import dsedge
from dsedge import reference
from dsedge.artifact import verify_artifact
from dsedge.quantize import config_from_options


def _props(folder) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(folder / "model.onnx"), load_external_data=False).metadata_props}


@pytest.mark.slow
def test_onnx_metadata_matches_the_manifest(built, tmp_path):
    res = built(reference.DEFAULT_MODEL, "rtn", 4)
    m, props = res.manifest, _props(res.path)
    assert props["dsedge.version"] == m["dsedge_version"] == dsedge.__version__
    assert (props["dsedge.method"], props["dsedge.bits"], props["dsedge.group_size"]) == ("rtn", "4", "128")
    assert json.loads(props["dsedge.quantization"]) == m["quantization"]
    assert props["dsedge.source_sha256"] == m["source"]["sha256"] and len(props["dsedge.source_sha256"]) == 64
    assert props["dsedge.target"] == m["target"]["name"] == "orin-agx-64"
    assert props["dsedge.tensorrt"] == m["tensorrt_compat"]["tensorrt"]

    # the same export for another target comes from the cache: its metadata names the new target
    other = dsedge.build(reference.checkpoint_path(), target="rtx-4090", quant=config_from_options("rtn", 4),
                         output=tmp_path / "rtx", latency=False)
    assert "export" in other.report["reused_stages"]
    got = _props(other.path)
    assert got["dsedge.target"] == "rtx-4090" and got["dsedge.tensorrt"] == other.manifest["tensorrt_compat"]["tensorrt"]
    assert got["dsedge.source_sha256"] == props["dsedge.source_sha256"]
    # the manifest hashes the stamped file (dsedge verify would catch a stale hash)
    verify_artifact(other.path)
