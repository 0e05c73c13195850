"""Which of the artifact target's JetPack releases a device runs (from its probe), and the ONNX
checked again for that JetPack's TensorRT before an engine is built there."""
from __future__ import annotations

import shutil

import onnx
import pytest

from dsedge.deploy.probe import DeviceInfo, check_on_device_tensorrt, device_stack
from dsedge.errors import UsageError

MANIFEST = {"target": {"name": "orin-agx-64"}, "tensorrt_compat": {"tensorrt": "10.3"}}


def test_the_device_tensorrt_picks_the_jetpack():
    jp7 = device_stack(MANIFEST, DeviceInfo({"tensorrt": "10.16.0.72"}))
    assert (jp7.jetpack, jp7.tensorrt, jp7.target.tensorrt.version) == ("7.2", "10.16.0.72", "10.16")
    jp6 = device_stack(MANIFEST, DeviceInfo({"tensorrt": "10.3.0.30", "l4t": "r36.4.3"}))
    assert (jp6.jetpack, jp6.target.tensorrt.version) == ("6.2", "10.3")
    other = device_stack(MANIFEST, DeviceInfo({"tensorrt": "8.6.2", "l4t": "r36.2.0"}))
    assert other.target is None and other.jetpack == "6.0 DP"          # not one the target lists: L4T's
    assert device_stack(MANIFEST, DeviceInfo({})).target is None          # no TensorRT there
    assert device_stack({"target": {"name": "gone"}}, DeviceInfo({"tensorrt": "10.3"})).target is None


def test_an_opset_23_graph_is_refused_for_a_jetpack_6_2_device(artifacts, tmp_path):
    """Checked for JetPack 7.2 (TensorRT 10.16, opset <= 24), flashed to a 6.2 device (10.3,
    opset <= 21): refused before anything is sent, with the --jetpack to rebuild for."""
    a, _ = artifacts
    art = shutil.copytree(a, tmp_path / "a")
    m = onnx.load(str(art / "model.onnx"), load_external_data=False)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 23
    onnx.save(m, str(art / "model.onnx"))
    built_for_7 = {"target": {"name": "orin-agx-64"}, "tensorrt_compat": {"tensorrt": "10.16"}}
    jp6 = device_stack(built_for_7, DeviceInfo({"tensorrt": "10.3.0.30"}))
    with pytest.raises(UsageError, match=r"does not parse with this device's TensorRT 10.3.0.30 \(JetPack 6.2\)") as e:
        check_on_device_tensorrt(art, built_for_7, jp6, "nvidia@orin")
    assert "opset 23" in e.value.problem and "--jetpack 6.2" in e.value.fix
    # the same TensorRT as the artifact was checked for: nothing to check again
    check_on_device_tensorrt(art, MANIFEST, device_stack(MANIFEST, DeviceInfo({"tensorrt": "10.3.0"})), "d")
