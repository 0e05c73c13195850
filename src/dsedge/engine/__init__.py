"""TensorRT: the compatibility check (no TensorRT needed), the engine-build settings (pure),
and the build / load calls (need `tensorrt` on a GPU that matches the target)."""
from .build import (DEVICE_SCRIPT, ENGINE_FILE, EngineInfo, build_engine, device_command, load_engine,
                    trtexec_args, write_device_script)
from .compat import CompatReport, Problem, check_onnx
from .graph import GraphSignature, signature
from .platform import build_refusals, load_mismatches, running_platform
from .settings import EngineSettings, engine_settings

__all__ = ["check_onnx", "CompatReport", "Problem", "engine_settings", "EngineSettings", "GraphSignature",
           "signature", "build_engine", "load_engine", "device_command", "write_device_script", "trtexec_args",
           "EngineInfo", "ENGINE_FILE", "DEVICE_SCRIPT", "build_refusals", "load_mismatches", "running_platform"]
