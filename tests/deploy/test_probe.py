"""Device addresses, engine / runtime choice from the device's probe, and shell quoting of
remote arguments (against the real sshd)."""
from __future__ import annotations

import pytest

from dsedge import deploy
from dsedge.deploy.errors import EngineMismatch
from dsedge.deploy.probe import DeviceInfo, choose_runtime, jetpack_for
from dsedge.deploy.ssh import DeviceAddress
from dsedge.errors import UsageError

ORIN = {"tensorrt": "10.3.0", "l4t": "r36.4.3", "board": "NVIDIA Jetson AGX Orin Developer Kit",
        "gpu": {"gpu_name": "Orin", "compute_capability": "8.7"}}
ENGINE = {"built": True, "metadata": {"tensorrt": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7",
                                      "l4t": "r36.4.3", "hardware_compatibility_level": "none"}}


def test_addresses():
    a = DeviceAddress.parse("nvidia@10.0.0.5:2222")
    assert (a.user, a.host, a.port, a.known_hosts_name) == ("nvidia", "10.0.0.5", 2222, "[10.0.0.5]:2222")
    assert DeviceAddress.parse("orin-01").port == 22 and DeviceAddress.parse("orin-01").known_hosts_name == "orin-01"
    for bad in ("nvidia@host:99999", "a b", "-oProxyCommand=x", "user@host;rm", ""):
        with pytest.raises(UsageError):
            DeviceAddress.parse(bad)


def test_runtime_choice_and_engine_refusal():
    dev = DeviceInfo(ORIN)
    assert dev.jetpack == "6.2" and jetpack_for("r36.4.0") == "6.1" and jetpack_for("r35.4.1") == "5.1.2"
    assert choose_runtime({"engine": ENGINE}, dev, "auto", "d") == ("tensorrt", False)
    assert choose_runtime({"engine": {"built": False}}, dev, "auto", "d") == ("tensorrt", True)   # built there
    old = DeviceInfo({**ORIN, "tensorrt": "8.6.2", "l4t": "r36.2.0"})
    with pytest.raises(EngineMismatch) as e:
        choose_runtime({"engine": ENGINE}, old, "auto", "d")
    assert "10.3.0" in str(e.value) and "8.6.2" in str(e.value)
    rtx = DeviceInfo({"tensorrt": "10.3.0", "l4t": None, "gpu": {"gpu_name": "NVIDIA GeForce RTX 4090",
                                                                 "compute_capability": "8.9"}})
    with pytest.raises(EngineMismatch, match="compute capability 8.7"):
        choose_runtime({"engine": ENGINE}, rtx, "auto", "d")
    none = DeviceInfo({"tensorrt": None})
    with pytest.raises(UsageError, match="no TensorRT") as e:
        choose_runtime({"engine": {"built": False}}, none, "auto", "d")
    assert "--runtime onnxruntime" in e.value.fix
    assert choose_runtime({"engine": ENGINE}, none, "onnxruntime", "d") == ("onnxruntime", False)


def test_remote_arguments_are_quoted(sshd, tmp_path):
    marker = tmp_path / "injected"
    root = tmp_path / f"dev; touch {marker}; $(touch {marker}) `touch {marker}`"
    [st] = deploy.devices_status([sshd.address], **sshd.kwargs(root))
    assert st.ok, st.error
    assert not marker.exists()
    assert st.info["current"] is None and st.info["modules"]["onnxruntime"]
