"""Engine build: refusals and load checks from metadata (pure), the device command, and the
TensorRT calls themselves where `tensorrt` imports on a GPU that matches a target."""
from __future__ import annotations

import os
import shlex

import pytest

from dsedge.engine import (build_engine, build_refusals, device_command, engine_settings, load_engine,
                           load_mismatches, running_platform, signature, trtexec_args, write_device_script)
from dsedge.engine.graph import load
from dsedge.engine.platform import parse_tegra_release
from dsedge.errors import TargetError
from dsedge.targets import find_target, list_targets

ORIN_DEVICE = {"tensorrt": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7", "l4t": "r36.4.3",
               "machine": "aarch64"}
X86_4090 = {"tensorrt": "10.16.0.72", "gpu_name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9",
            "l4t": None, "machine": "x86_64"}


@pytest.fixture(scope="module")
def int4(fp16_graph):
    path = fp16_graph("int4")
    return path, signature(load(path)[0])


def test_tegra_release():
    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    assert parse_tegra_release(text) == "r36.4.3"
    assert parse_tegra_release("garbage") is None


def test_build_refusals():
    orin, l40 = find_target("orin"), find_target("l40")
    assert build_refusals(orin, ORIN_DEVICE) == []
    why = " ".join(build_refusals(orin, X86_4090))
    assert "not portable" in why and "compute capability 8.9" in why
    assert build_refusals(l40, X86_4090) == []            # same CC 8.9, discrete: allowed
    assert "is a Jetson" in " ".join(build_refusals(l40, ORIN_DEVICE))
    newer = dict(ORIN_DEVICE, tensorrt="10.7.0.23", l4t="r36.5.0")
    why = " ".join(build_refusals(orin, newer))
    assert "would not load there" in why and "L4T r36.5.0" in why
    assert "not importable" in " ".join(build_refusals(orin, dict(ORIN_DEVICE, tensorrt=None)))


def test_build_is_refused_here_for_orin(int4, tmp_path):
    if running_platform()["l4t"]:
        pytest.skip("this machine is a Jetson")
    path, sig = int4
    orin = find_target("orin")
    with pytest.raises(TargetError, match="cannot build a orin-agx-64 engine here") as e:
        build_engine(path, orin, engine_settings(orin, sig, tmp_path), tmp_path / "model.engine")
    assert "dsedge engine build" in e.value.fix
    assert not (tmp_path / "model.engine").exists()


def test_load_mismatches():
    meta = dict(X86_4090, hardware_compatibility_level="same_compute_capability")
    assert load_mismatches(meta, X86_4090) == []
    l40 = dict(X86_4090, gpu_name="NVIDIA L40")
    assert load_mismatches(meta, l40) == []                                  # same CC under the level
    assert "without hardware compatibility" in load_mismatches(dict(meta, hardware_compatibility_level="none"), l40)[0]
    (why,) = load_mismatches(meta, dict(X86_4090, tensorrt="10.16.0.70"))
    assert "TensorRT 10.16.0.72" in why
    why = load_mismatches(dict(ORIN_DEVICE, hardware_compatibility_level="none"), dict(ORIN_DEVICE, l4t="r36.3.0"))
    assert why == ["engine built on L4T r36.4.3, this is r36.3.0"]
    assert len(load_mismatches(dict(ORIN_DEVICE), X86_4090)) == 3


def _groups(args, flag):
    return [dict(kv.split(":") for kv in a.split("=", 1)[1].split(",")) for a in args if a.startswith(flag + "=")]


def test_device_command_matches_the_settings(int4, tmp_path):
    path, sig = int4
    orin = find_target("orin")
    s = engine_settings(orin, sig, tmp_path)
    args = trtexec_args(orin, s)
    assert args[0] == "/usr/src/tensorrt/bin/trtexec" and "--stronglyTyped" in args and "--skipInference" in args
    assert f"--memPoolSize=workspace:{s.memory.workspace_bytes >> 20}" in args
    assert not any(a.startswith("--hardwareCompatibilityLevel") for a in args)
    for flag, which in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
        groups = _groups(args, flag)
        assert len(groups) == 2                        # prefill, then decode
        for g, p in zip(groups, s.profiles):
            assert set(g) == set(sig.inputs)
            assert all(g[k] == "x".join(map(str, getattr(r, which))) for k, r in p.shapes.items())
    script = write_device_script(tmp_path, orin, s)
    text = script.read_text()
    assert os.access(script, os.X_OK) and text == device_command(tmp_path, orin, s)
    assert "dsedge engine build . --target orin-agx-64" in text and "JetPack 6.2" in text
    trt_line = text.split("# without dsedge: the same settings through trtexec\n")[1].replace("\\\n", " ")
    assert shlex.split(trt_line) == args
    rtx = find_target("rtx-4090")
    rargs = trtexec_args(rtx, engine_settings(rtx, sig, tmp_path, list_targets().values()))
    assert rargs[0] == "trtexec" and "--hardwareCompatibilityLevel=sameComputeCapability" in rargs


# -- the TensorRT calls ----------------------------------------------------------------------------

def _matching_target():
    here = running_platform()
    for t in list_targets().values():
        if not build_refusals(t, here):
            return t
    pytest.skip(f"no target matches this machine ({here['gpu_name']}, compute capability "
                f"{here['compute_capability']}, TensorRT {here['tensorrt']})")


def test_build_and_load_an_engine(int4, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (pip install 'dsedge[tensorrt]'; "
                                           "JetPack ships it); the build runs where it imports on a matching GPU")
    target = _matching_target()
    path, sig = int4
    s = engine_settings(target, sig, tmp_path, list_targets().values())
    info = build_engine(path, target, s, tmp_path / "model.engine")
    assert info.path.stat().st_size == info.bytes > 0 and (tmp_path / "tensorrt").is_dir()
    assert info.metadata["compute_capability"] == target.gpu.compute_capability
    engine = load_engine(info.path, info.metadata)
    assert engine.num_optimization_profiles == 2
    with pytest.raises(TargetError, match="TensorRT 0.0"):
        load_engine(info.path, dict(info.metadata, tensorrt="0.0"))


@pytest.mark.slow
def test_build_engine_sh_names_the_artifact_not_its_staging_folder(built):
    """A build writes in ".NAME.partial-PID" and renames it at the end: the script names NAME, and
    its profiles stop at the model's max_position_embeddings (512 for the reference checkpoints)."""
    from dsedge import reference

    res = built(reference.DEFAULT_MODEL, "rtn", 4)
    text = (res.path / res.report["engine"]["device_script"]).read_text()
    assert f"# Build the TensorRT engine of {res.path.name} on the orin-agx-64" in text, text.splitlines()[1]
    assert ".partial" not in text
    decode = res.report["engine"]["settings"]["profiles"]["decode"]
    assert decode["attention_mask"]["max"][1] == 512 < find_target("orin").profile.max_context
