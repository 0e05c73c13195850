"""What a device is (from device/remote.py's probe) and whether an artifact's engine fits it."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import EngineMismatch, UsageError

# L4T release -> JetPack (NVIDIA's JetPack archive / L4T release notes); most specific prefix wins.
_JETPACK = [("r38.2", "7.0"), ("r36.4.4", "6.2.1"), ("r36.4.3", "6.2"), ("r36.4", "6.1"), ("r36.3", "6.0"),
            ("r36.2", "6.0 DP"), ("r35.6", "5.1.4"), ("r35.5", "5.1.3"), ("r35.4", "5.1.2"), ("r35.3", "5.1.1"),
            ("r35.2", "5.1"), ("r35.1", "5.0.2")]


def jetpack_for(l4t: str | None) -> str | None:
    if not l4t:
        return None
    for prefix, jp in _JETPACK:
        if l4t == prefix or l4t.startswith(prefix + "."):
            return jp
    return None


@dataclass
class DeviceInfo:
    raw: dict = field(default_factory=dict)

    @property
    def tensorrt(self) -> str | None:
        return self.raw.get("tensorrt")

    @property
    def l4t(self) -> str | None:
        return self.raw.get("l4t")

    @property
    def jetpack(self) -> str | None:
        return jetpack_for(self.l4t)

    @property
    def gpu(self) -> dict:
        return self.raw.get("gpu") or {}

    def running(self) -> dict:
        """In the form engine.platform compares engine metadata with."""
        return {"tensorrt": self.tensorrt, "gpu_name": self.gpu.get("gpu_name"),
                "compute_capability": self.gpu.get("compute_capability"), "l4t": self.l4t}

    def summary(self) -> str:
        parts = [self.raw.get("board") or self.raw.get("machine") or "?"]
        parts.append(f"JetPack {self.jetpack} (L4T {self.l4t})" if self.l4t else "not a Jetson")
        parts.append(f"TensorRT {self.tensorrt}" if self.tensorrt else "no TensorRT")
        return ", ".join(parts)


def choose_runtime(manifest: dict, dev: DeviceInfo, requested: str, address) -> tuple[str, bool]:
    """-> (runtime, build the engine there?). Refuses a prebuilt engine the device cannot load,
    and TensorRT-less devices unless --runtime onnxruntime."""
    engine = manifest.get("engine") or {}
    if requested == "onnxruntime":
        return "onnxruntime", False
    if dev.tensorrt is None:
        raise UsageError(f"{address}: no TensorRT on the device ({dev.summary()})",
                         "install JetPack's TensorRT there, or pass --runtime onnxruntime to run the artifact's "
                         "ONNX with onnxruntime instead")
    if engine.get("built"):
        from ..engine.platform import load_mismatches   # (imports onnx: only when needed)

        meta = engine.get("metadata") or {}
        bad = load_mismatches(meta, dev.running())
        if bad:
            raise EngineMismatch(f"{address}: the artifact's prebuilt engine cannot load on this device: "
                                 + "; ".join(bad),
                                 "rebuild the artifact with --no-engine so the engine is built on the device, or "
                                 f"build it there: `dsedge engine build` / build_engine.sh (device: {dev.summary()})")
        return "tensorrt", False
    # No engine in the artifact: it is built on the device (build_engine.sh), so it matches the
    # device's TensorRT by construction.
    return "tensorrt", True


@dataclass
class Stack:
    """The device's JetPack / TensorRT, and the artifact's target on that JetPack (None: the
    target is not a Jetson, not known here, or lists no JetPack with the device's TensorRT)."""
    jetpack: str | None
    tensorrt: str | None
    target: object = None


def device_stack(manifest: dict, dev: DeviceInfo, targets_dir=None) -> Stack:
    """Pick, among the JetPack releases the artifact's target allows (targets/*.yaml `tensorrt` +
    `jetpacks`), the one whose TensorRT (major.minor) the device probe reports."""
    from ..engine.support import parse_version

    stack = Stack(dev.jetpack, dev.tensorrt)
    name = (manifest.get("target") or {}).get("name")
    if not dev.tensorrt or not name:
        return stack
    from ..errors import TargetError
    from ..targets import find_target

    try:
        target = find_target(name, targets_dir)
        have = parse_version(dev.tensorrt)
    except (TargetError, ValueError):
        return stack          # a target this host does not know, or an odd version string
    for jp, trt in target.jetpack_releases.items():
        if parse_version(trt.version) == have:
            return Stack(jp, dev.tensorrt, target.for_jetpack(jp))
    return stack


def check_on_device_tensorrt(folder, manifest: dict, stack: Stack, address) -> None:
    """An engine built there uses the device's TensorRT: when that is another JetPack's than
    the artifact was checked against, check the ONNX against it before anything is sent."""
    built_for = (manifest.get("tensorrt_compat") or {}).get("tensorrt")
    if stack.target is None or stack.target.tensorrt.version == built_for:
        return
    from ..engine.compat import check_onnx

    rep = check_onnx(folder, stack.target)
    if not rep.ok:
        raise UsageError(f"{address}: the artifact's ONNX (checked for TensorRT {built_for}) does not parse with "
                         f"this device's TensorRT {stack.tensorrt} (JetPack {stack.jetpack}): "
                         + "; ".join(str(p) for p in rep.problems[:5]),
                         f"rebuild the artifact with --jetpack {stack.jetpack} (dsedge build --target "
                         f"{stack.target.name} --jetpack {stack.jetpack})")
