"""`dsedge flash`: probe, upload (resumable, sha256-checked), engine build there, smoke test,
then atomic activation; per device, several devices in parallel. Any failure before the one
rename that activates leaves the device on its previous release."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import DsedgeError, UsageError
from .errors import DeviceError, SmokeTestFailed
from .inventory import DeviceTarget
from .probe import DeviceInfo, check_on_device_tensorrt, choose_runtime, device_stack
from .releases import artifact_id, files_to_ship, read_manifest
from .remote import DeviceSide
from .smoke import compare, reference
from .ssh import Ssh, SshOptions
from .upload import UploadStats, upload


@dataclass
class FlashOptions:
    runtime: str = "auto"             # auto: TensorRT where the device has it; onnxruntime: the ONNX
    smoke_tokens: int = 8
    ssh: SshOptions = field(default_factory=SshOptions)
    parallel: int = 8
    progress: object = None           # progress(device name, file name, bytes done, size)

    def __post_init__(self):
        if not isinstance(self.smoke_tokens, int) or self.smoke_tokens < 1:
            raise UsageError(f"--smoke-tokens {self.smoke_tokens} would activate a release without running it",
                             "pass --smoke-tokens 1 or more (default 8)")


@dataclass
class DeviceResult:
    device: str
    ok: bool
    action: str = "flash"
    release: str | None = None
    previous: str | None = None
    runtime: str | None = None
    platform: str | None = None
    jetpack: str | None = None        # the device's JetPack / TensorRT (probe), as the target file names them
    tensorrt: str | None = None
    bytes_sent: int = 0
    resumed_bytes: int = 0
    engine_built: bool = False
    repaired: list = field(default_factory=list)   # files of a release already there that did not match
    smoke: str | None = None
    seconds: float = 0.0
    error: str | None = None
    fix: str | None = None
    exit_code: int = 0
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def device_side(t: DeviceTarget, ssh: SshOptions) -> DeviceSide:
    if t.identity and ssh.identity is None:      # the inventory's per-host key, unless --identity
        ssh = replace(ssh, identity=Path(t.identity))
    return DeviceSide(Ssh(t.address, ssh), t.root, t.python)


def _flash_one(res: DeviceResult, folder: Path, manifest: dict, rid: str, files, ref, t: DeviceTarget,
               opts: FlashOptions) -> DeviceResult:
    res.release = rid
    dev = device_side(t, opts.ssh)
    info = DeviceInfo(dev.call("probe", what="probing the device"))
    res.platform, res.info = info.summary(), info.raw
    runtime, build = choose_runtime(manifest, info, t.runtime or opts.runtime, t.address)
    res.runtime = runtime
    stack = device_stack(manifest, info)
    res.jetpack, res.tensorrt = stack.jetpack, stack.tensorrt
    if build:
        check_on_device_tensorrt(folder, manifest, stack, t.address)
    progress = (lambda name, done, size: opts.progress(t.name, name, done, size)) if opts.progress else None
    stats = UploadStats()
    try:
        upload(dev, rid, files, progress, stats)
    finally:
        res.bytes_sent, res.resumed_bytes = stats.bytes_sent, sum(stats.resumed.values())
        res.repaired = list(stats.repaired)
    if build and not stats.already_released:
        b = dev.call("build", rid, what="building the engine (build_engine.sh)", timeout=None)
        if not b.get("ok"):
            raise DeviceError(f"{t.name}: the engine build failed on the device (exit {b.get('returncode')}):\n"
                              f"{b.get('log_tail', '')[-1200:]}",
                              "see engine_build.log in the staging folder there; more swap helps big builds "
                              "(examples/jetson/README.md); or pass --runtime onnxruntime")
        res.engine_built = True
    got = dev.call("run", rid, "smoke", "--ids", ",".join(map(str, ref.prompt_ids)), "--n", str(len(ref.tokens)),
                   "--runtime", runtime, what=f"the smoke test ({runtime})", timeout=900)
    ok, why = compare(ref, got.get("tokens", []))
    res.smoke = f"{got.get('runtime', runtime)}: {why}"
    if not ok:
        raise SmokeTestFailed(f"{t.name}: smoke test failed: {why}",
                              "the device's release was not activated; check the runtime there (TensorRT version, "
                              "onnxruntime) and the artifact")
    act = dev.call("activate", rid, what="activating the release")
    res.previous, res.ok = act.get("previous"), True
    return res


def _guard(fn, t: DeviceTarget, action: str) -> DeviceResult:
    """Run fn(result) for one device; its failure becomes a failed result (the others go on)
    that keeps what was learnt before it (platform, bytes sent)."""
    t0 = time.perf_counter()
    res = DeviceResult(t.name, False, action)
    try:
        res = fn(res)
    except DsedgeError as e:
        res.ok, res.error, res.fix, res.exit_code = False, e.problem, e.fix, e.exit_code
    except Exception as e:     # a dropped pipe, a bug: reported per device, never a half activation
        res.ok, res.error, res.exit_code = False, f"{type(e).__name__}: {e}", 1
    res.seconds = time.perf_counter() - t0
    return res


def _parallel(targets, work, parallel: int) -> list[DeviceResult]:
    if len(targets) == 1:
        return [work(targets[0])]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        return list(pool.map(work, targets))


def flash(artifact, targets: list[DeviceTarget], opts: FlashOptions | None = None) -> list[DeviceResult]:
    opts = opts or FlashOptions()
    folder = Path(artifact)
    manifest = read_manifest(folder)
    rid, files = artifact_id(folder), files_to_ship(folder)
    ref = reference(folder, opts.smoke_tokens)
    work = lambda t: _guard(lambda r: _flash_one(r, folder, manifest, rid, files, ref, t, opts), t, "flash")  # noqa: E731
    return _parallel(targets, work, opts.parallel)


def rollback(targets: list[DeviceTarget], opts: FlashOptions | None = None) -> list[DeviceResult]:
    opts = opts or FlashOptions()

    def one(t):
        def go(res):
            r = device_side(t, opts.ssh).call("rollback", what="rolling back")
            res.ok, res.release, res.previous = True, r["current"], r["previous"]
            return res
        return _guard(go, t, "rollback")
    return _parallel(targets, one, opts.parallel)


def status(targets: list[DeviceTarget], opts: FlashOptions | None = None) -> list[DeviceResult]:
    opts = opts or FlashOptions()

    def one(t):
        def go(res):
            info = DeviceInfo(device_side(t, opts.ssh).call("probe", what="probing the device"))
            hist = info.raw.get("history") or []
            res.ok, res.release, res.platform, res.info = True, info.raw.get("current"), info.summary(), info.raw
            res.previous = hist[-2] if len(hist) > 1 else None
            return res
        return _guard(go, t, "status")
    return _parallel(targets, one, opts.parallel)
