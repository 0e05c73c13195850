"""Build, load and describe TensorRT engines. The TensorRT calls are thin: every value they get
comes from an EngineSettings (settings.py). Where the running machine cannot build for the
target (engines are tied to platform, compute capability and TensorRT version), the build is
refused and `device_command` gives what to run on the device instead.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError, TargetError, UsageError
from .platform import build_refusals, load_mismatches, running_platform
from .settings import MiB, EngineSettings

ENGINE_FILE = "model.engine"
DEVICE_SCRIPT = "build_engine.sh"
TRTEXEC = {"jetson": "/usr/src/tensorrt/bin/trtexec", "discrete": "trtexec"}
_HW_FLAG = {"same_compute_capability": "sameComputeCapability"}


@dataclass
class EngineInfo:
    path: Path
    sha256: str
    bytes: int
    seconds: float
    metadata: dict = field(default_factory=dict)   # what load_engine checks; goes in the manifest

    def to_dict(self) -> dict:
        return {"file": self.path.name, "sha256": self.sha256, "bytes": self.bytes,
                "build_seconds": round(self.seconds, 1), "metadata": self.metadata}


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UsageError("TensorRT is not installed here",
                         "pip install 'dsedge[tensorrt]' (on Jetson it comes with JetPack), or run the "
                         f"{DEVICE_SCRIPT} written into the artifact on the device") from None
    return trt


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parse(trt, network, logger, onnx_path: Path):
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return parser
    errs = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        node = e.node_name() if hasattr(e, "node_name") else str(e.node())
        op = e.node_operator() if hasattr(e, "node_operator") else ""
        errs.append(f"{node} ({op}): {e.desc()}")
    raise ExportError("TensorRT's ONNX parser rejected the graph:\n  " + "\n  ".join(errs or ["(no detail)"]),
                      "run `dsedge check-onnx` for the support table's view, and report the node")


def _configure(trt, builder, config, settings: EngineSettings) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.memory.workspace_bytes)
    config.builder_optimization_level = settings.builder_optimization_level
    if settings.hardware_compatibility_level == "same_compute_capability":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    for flag in settings.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for p in settings.profiles:
        prof = builder.create_optimization_profile()
        for name, r in p.shapes.items():
            prof.set_shape(name, r.min, r.opt, r.max)
        config.add_optimization_profile(prof)


def build_engine(onnx_path, target, settings: EngineSettings, out_path=None, timing_cache=None) -> EngineInfo:
    """Build `onnx_path` into a serialized engine at `out_path` (default: model.engine beside it),
    reusing and updating the timing cache. Refuses (TargetError) where this machine cannot build
    an engine that runs on `target`."""
    onnx_path = Path(onnx_path)
    out_path = Path(out_path) if out_path else onnx_path.with_name(ENGINE_FILE)
    running = running_platform()
    refusals = build_refusals(target, running)
    if refusals:
        raise TargetError(f"cannot build a {target.name} engine here: " + "; ".join(refusals),
                          f"run on the {target.name}: `dsedge engine build ARTIFACT --target {target.name}` "
                          f"(or the artifact's {DEVICE_SCRIPT})")
    if not settings.memory.fits:
        raise TargetError(f"the engine build does not fit in {target.name}'s memory: " + "; ".join(settings.notes[1:]),
                          "use fewer bits (--bits 4), a smaller profile (max_context / max_batch), or a bigger target")
    trt = _import_trt()
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if settings.strongly_typed else 0
    network = builder.create_network(flags)
    _parse(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    _configure(trt, builder, config, settings)
    cache_path = Path(timing_cache or settings.timing_cache)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build the engine for {target.name} (see its log above)",
                          "lower the profile (max_context) or the workspace, or report the log")
    data = bytes(plan)
    _write_atomic(out_path, data)
    _write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    meta = {**running, "hardware_compatibility_level": settings.hardware_compatibility_level,
            "jetpack": target.tensorrt.jetpack if target.kind == "jetson" else None,
            "profiles": [p.name for p in settings.profiles], "target": target.name}
    return EngineInfo(out_path, hashlib.sha256(data).hexdigest(), len(data), time.perf_counter() - t0, meta)


def load_engine(path, expected_metadata: dict):
    """Deserialize an engine after checking its metadata (from the manifest) against this
    machine's TensorRT, GPU and L4T; TargetError naming each mismatch otherwise."""
    trt = _import_trt()
    bad = load_mismatches(expected_metadata, running_platform())
    if bad:
        raise TargetError(f"{path} was not built for this machine: " + "; ".join(bad),
                          "rebuild the engine here with `dsedge engine build`")
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise TargetError(f"TensorRT could not deserialize {path}", "rebuild it with `dsedge engine build`")
    return engine


def _shape_spec(which: str, profile) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, getattr(r, which)))}" for name, r in profile.shapes.items())


def trtexec_args(target, settings: EngineSettings, onnx: str = "model.onnx", engine: str = ENGINE_FILE,
                 timing_cache: str | None = None) -> list[str]:
    """trtexec's arguments for the same build: one --minShapes/--optShapes/--maxShapes group per
    optimization profile (prefill, then decode)."""
    args = [TRTEXEC[target.kind], f"--onnx={onnx}", f"--saveEngine={engine}", "--skipInference"]
    if settings.strongly_typed:
        args.append("--stronglyTyped")
    for p in settings.profiles:
        args += [f"--minShapes={_shape_spec('min', p)}", f"--optShapes={_shape_spec('opt', p)}",
                 f"--maxShapes={_shape_spec('max', p)}"]
    args += [f"--memPoolSize=workspace:{settings.memory.workspace_bytes // MiB}",
             f"--builderOptimizationLevel={settings.builder_optimization_level}",
             f"--timingCacheFile={timing_cache or Path(settings.timing_cache).name}"]
    if settings.hardware_compatibility_level in _HW_FLAG:
        args.append(f"--hardwareCompatibilityLevel={_HW_FLAG[settings.hardware_compatibility_level]}")
    return args


def device_command(artifact, target, settings: EngineSettings, name: str | None = None) -> str:
    """The shell script to run in the artifact folder on the device: `dsedge engine build`, or
    the same build through trtexec where dsedge is not installed. name: the artifact's name
    (default: the folder's; a build writes in a staging folder named otherwise)."""
    name = name or Path(artifact).name
    t = target.tensorrt
    where = (f"the {target.name} (JetPack {t.jetpack}, L4T {t.l4t}, TensorRT {t.version})" if target.kind == "jetson"
             else f"a compute capability {target.gpu.compute_capability} GPU ({target.name}), TensorRT {t.version}")
    trt = " \\\n  ".join(shlex.quote(a) for a in trtexec_args(target, settings))
    return (f"#!/bin/sh\n# Build the TensorRT engine of {name} on {where}.\n"
            "# Engines are tied to the GPU, the platform and the TensorRT version: build them on the device.\n"
            "set -eu\ncd \"$(dirname \"$0\")\"\n"
            "if command -v dsedge >/dev/null 2>&1; then\n"
            f"  exec dsedge engine build . --target {shlex.quote(target.name)}\nfi\n"
            "# without dsedge: the same settings through trtexec\n"
            f"{trt}\n")


def write_device_script(artifact, target, settings: EngineSettings, name: str | None = None) -> Path:
    path = Path(artifact) / DEVICE_SCRIPT
    _write_atomic(path, device_command(artifact, target, settings, name).encode())
    path.chmod(0o755)
    return path
