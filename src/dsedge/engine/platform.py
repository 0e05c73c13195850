"""What this machine is, for engine builds and loads: TensorRT version, GPU name and compute
capability (CUDA driver API through ctypes, no CUDA Python package needed), and L4T on Jetson.
The comparisons are pure functions of dicts, tested without a GPU."""
from __future__ import annotations

import ctypes
import platform as _platform
import re
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_CC_MAJOR, _CC_MINOR = 75, 76   # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR (cuda.h)


def parse_tegra_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, GCID: ...' -> 'r36.4.3' (the L4T release)."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"r{m.group(1)}.{m.group(2)}" if m else None


def l4t_release(path: Path = TEGRA_RELEASE) -> str | None:
    try:
        return parse_tegra_release(path.read_text())
    except OSError:
        return None


def gpu_info(device: int = 0) -> dict | None:
    """{"gpu_name", "compute_capability"} of CUDA device `device`, or None without a driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    if (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), device)
            or cuda.cuDeviceGetName(name, 256, dev)
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)):
        return None
    return {"gpu_name": name.value.decode(errors="replace"), "compute_capability": f"{major.value}.{minor.value}"}


def running_platform() -> dict:
    """This machine as engine metadata: tensorrt (None if not importable), gpu_name,
    compute_capability (None without a GPU), l4t (None off Jetson), machine."""
    try:
        import tensorrt as trt
        trt_version = trt.__version__
    except ImportError:
        trt_version = None
    gpu = gpu_info() or {"gpu_name": None, "compute_capability": None}
    return {"tensorrt": trt_version, **gpu, "l4t": l4t_release(), "machine": _platform.machine()}


def _mm(v: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v or "")[:2])


def build_refusals(target, running: dict) -> list[str]:
    """Why an engine for `target` cannot be built here (empty: it can). Engines are tied to the
    GPU's compute capability, the platform and the TensorRT version that builds them."""
    out = []
    if running.get("tensorrt") is None:
        out.append("TensorRT is not importable here")
    if running.get("compute_capability") is None:
        out.append("no CUDA GPU is visible here")
    on_jetson = running.get("l4t") is not None
    if target.kind == "jetson" and not on_jetson:
        out.append(f"{target.name} is a Jetson; this host ({running.get('machine')}, "
                   f"{running.get('gpu_name') or 'no GPU'}) is not: engines are not portable across platforms")
    if target.kind == "discrete" and on_jetson:
        out.append(f"{target.name} is a discrete GPU; this host is a Jetson ({running['l4t']})")
    cc = running.get("compute_capability")
    if cc is not None and cc != target.gpu.compute_capability:
        out.append(f"this GPU ({running.get('gpu_name')}) has compute capability {cc}, {target.name} has "
                   f"{target.gpu.compute_capability}")
    trt = running.get("tensorrt")
    if trt is not None:
        want = _mm(target.tensorrt.version)
        if target.kind == "jetson" and _mm(trt) != want:
            out.append(f"TensorRT here is {trt}, {target.name} runs {target.tensorrt.version} "
                       f"(JetPack {target.tensorrt.jetpack}): the engine would not load there")
        elif _mm(trt)[:1] != want[:1]:
            out.append(f"TensorRT here is {trt}; {target.name} expects TensorRT {want[0]}.x")
    l4t = getattr(target.tensorrt, "l4t", None)
    if target.kind == "jetson" and on_jetson and l4t and _mm(running["l4t"]) != _mm(l4t):
        out.append(f"this Jetson runs L4T {running['l4t']}, {target.name} is {l4t}")
    return out


def load_mismatches(expected: dict, running: dict) -> list[str]:
    """Why an engine built with `expected` metadata cannot be deserialised here. Without the
    version-compatible flag (dsedge does not set it) TensorRT needs the exact same version."""
    out = []
    if expected.get("tensorrt") != running.get("tensorrt"):
        out.append(f"engine built with TensorRT {expected.get('tensorrt')}, this is {running.get('tensorrt')}")
    if expected.get("compute_capability") != running.get("compute_capability"):
        out.append(f"engine built for compute capability {expected.get('compute_capability')}, this GPU "
                   f"({running.get('gpu_name')}) is {running.get('compute_capability')}")
    elif (expected.get("hardware_compatibility_level", "none") == "none"
          and expected.get("gpu_name") != running.get("gpu_name")):
        out.append(f"engine built on {expected.get('gpu_name')} without hardware compatibility, this GPU is "
                   f"{running.get('gpu_name')}")
    if expected.get("l4t") != running.get("l4t"):
        out.append(f"engine built on L4T {expected.get('l4t') or 'none (not a Jetson)'}, this is "
                   f"{running.get('l4t') or 'not a Jetson'}")
    return out
