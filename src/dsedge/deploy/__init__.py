"""Deploy: flash artifacts onto devices over SSH, roll back, report status, benchmark where the
engine runs. Never imports torch (keeps `dsedge flash --help` fast); heavy imports are inside
the functions. dsedge.api re-exports flash, rollback, devices_status and bench."""
from __future__ import annotations

from pathlib import Path


def _setup(devices, inventory, root, python, known_hosts, identity, accept_new_host_key):
    from .inventory import load_devices
    from .ssh import SshOptions

    targets = load_devices(list(devices or []), inventory, root, python)
    ssh = SshOptions(Path(known_hosts) if known_hosts else None, Path(identity) if identity else None,
                     accept_new_host_key)
    return targets, ssh


def flash(artifact, devices=(), inventory=None, *, runtime: str = "auto", root: str | None = None,
          python: str | None = None, known_hosts=None, identity=None, accept_new_host_key: bool = False,
          smoke_tokens: int = 8, parallel: int = 8, progress=None):
    """Flash `artifact` onto each device (user@host[:port]) -> list of DeviceResult, one per
    device; a failed device keeps its previous release."""
    from .fleet import FlashOptions, flash as _flash

    targets, ssh = _setup(devices, inventory, root, python, known_hosts, identity, accept_new_host_key)
    return _flash(artifact, targets, FlashOptions(runtime, smoke_tokens, ssh, parallel, progress))


def rollback(devices=(), inventory=None, *, root=None, python=None, known_hosts=None, identity=None,
             accept_new_host_key: bool = False, parallel: int = 8):
    """Point each device's `current` back at its previous release."""
    from .fleet import FlashOptions, rollback as _rollback

    targets, ssh = _setup(devices, inventory, root, python, known_hosts, identity, accept_new_host_key)
    return _rollback(targets, FlashOptions(ssh=ssh, parallel=parallel))


def devices_status(devices=(), inventory=None, *, root=None, python=None, known_hosts=None, identity=None,
                   accept_new_host_key: bool = False, parallel: int = 8):
    """Active release, TensorRT / JetPack, free memory and power mode of each device."""
    from .fleet import FlashOptions, status as _status

    targets, ssh = _setup(devices, inventory, root, python, known_hosts, identity, accept_new_host_key)
    return _status(targets, FlashOptions(ssh=ssh, parallel=parallel))


def bench(artifact, device: str | None = None, *, runtime: str = "auto", prompt_tokens: int = 128,
          decode_tokens: int = 64, runs: int = 5, warmup: int = 2, root: str | None = None, python: str | None = None,
          known_hosts=None, identity=None, accept_new_host_key: bool = False, power_root: str = "/",
          write: bool = True, accuracy_level: int = 1, graph: str = "auto", accuracy: bool = False):
    """Benchmark the artifact here (or its active release on `device` over SSH); results go into
    the artifact's report (measured section, budgets) unless write=False -> the bench dict.
    accuracy=True: also run the build's eval windows through that runtime and score them against
    the FP16 reference the artifact carries (the bench dict's "accuracy", report.json
    measured.accuracy)."""
    from .benchmark import BenchOptions, run

    from .device.runtime import ACCURACY_LEVELS
    from ..errors import UsageError

    if accuracy_level not in ACCURACY_LEVELS:
        raise UsageError(f"--accuracy-level {accuracy_level} is not one of {', '.join(map(str, ACCURACY_LEVELS))}",
                         "use 1 (float activations, the default) or 4 (INT8 activations in onnxruntime's int4 kernel)")
    opts = BenchOptions(runtime, prompt_tokens, decode_tokens, runs, warmup, power_root, accuracy_level, graph, accuracy)
    target, ssh = (None, None)
    if device and graph == "host":
        raise UsageError("--graph host runs on this host only", "drop --device, or --graph")
    if device:
        targets, ssh = _setup([device], None, root, python, known_hosts, identity, accept_new_host_key)
        target = targets[0]
    return run(Path(artifact), opts, target, ssh, write)
