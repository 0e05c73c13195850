"""dsedge flash against a real sshd on loopback: activation, a failed smoke test leaving the old
release active, rollback, host-key refusal, an interrupted upload resumed."""
from __future__ import annotations

import json
import re
import subprocess
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from dsedge import deploy
from dsedge.deploy.releases import artifact_id


def keygen_fingerprint(pubkey_file) -> str:
    """SHA256 fingerprint of a public key file, as ssh-keygen -lf prints it."""
    out = subprocess.run(["ssh-keygen", "-lf", str(pubkey_file)], capture_output=True, text=True, check=True).stdout
    return re.search(r"SHA256:[A-Za-z0-9+/=]+", out).group(0)


def _current(root: Path) -> str | None:
    link = root / "current"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def test_flash_activates_then_switches_and_keeps_previous(sshd, artifacts, tmp_path):
    a, b = artifacts
    root = tmp_path / "device"
    [r1] = deploy.flash(a, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r1.ok, (r1.error, r1.fix)
    ida, idb = artifact_id(a), artifact_id(b)
    assert r1.release == ida and _current(root) == ida and r1.previous is None
    assert r1.runtime == "onnxruntime" and "identical" in r1.smoke
    rel = root / "releases" / ida
    manifest = json.loads((a / "manifest.json").read_text())
    for name, rec in manifest["files"].items():   # every file arrived whole
        assert (rel / name).stat().st_size == rec["bytes"]
    assert (rel / "dsedge_device" / "runtime.py").is_file()
    assert not list((root / "releases").glob(".*.partial"))

    [r2] = deploy.flash(b, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r2.ok and r2.release == idb and r2.previous == ida
    assert _current(root) == idb and rel.is_dir()              # the previous release is kept
    state = json.loads((root / "releases" / "state.json").read_text())
    assert state["history"] == [ida, idb]

    [st] = deploy.devices_status([sshd.address], **sshd.kwargs(root))
    assert st.ok and st.release == idb and st.previous == ida
    assert st.info["mem_available_bytes"] > 0 and "tensorrt" in st.info

    [rb] = deploy.rollback([sshd.address], **sshd.kwargs(root))
    assert rb.ok and rb.release == ida and rb.previous == idb and _current(root) == ida
    [rb2] = deploy.rollback([sshd.address], **sshd.kwargs(root))
    assert not rb2.ok and "no previous release" in rb2.error and _current(root) == ida

    # Flashing a release that is already on the device sends nothing and re-activates it.
    [r3] = deploy.flash(b, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r3.ok and r3.bytes_sent == 0 and _current(root) == idb


def test_failed_smoke_test_leaves_previous_release_active(sshd, artifacts, tmp_path):
    a, b = artifacts
    root = tmp_path / "device"
    [r1] = deploy.flash(a, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r1.ok, r1.error
    # A device python that cannot run the model: no site-packages (-S), so no numpy/onnxruntime.
    wrapper = tmp_path / "python-no-site"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    wrapper.chmod(0o755)
    kw = sshd.kwargs(root, runtime="onnxruntime")
    kw["python"] = str(wrapper)
    [r2] = deploy.flash(b, [sshd.address], **kw)
    assert not r2.ok and "smoke test" in r2.error and r2.exit_code == 1
    assert _current(root) == artifact_id(a)                      # still the old release
    assert (root / "releases" / f".{artifact_id(b)}.partial").is_dir()   # kept: a retry resumes
    assert not (root / "releases" / artifact_id(b)).exists()


def test_host_key_mismatch_and_unknown_host_refused(sshd, artifacts, tmp_path):
    a, _ = artifacts
    other = tmp_path / "other_key"
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {Path(f'{other}.pub').read_text()}")
    root = tmp_path / "device"
    kw = sshd.kwargs(root, runtime="onnxruntime")
    kw["known_hosts"] = kh
    [r] = deploy.flash(a, [sshd.address], **kw)
    assert not r.ok and r.exit_code == 2
    real = keygen_fingerprint(f"{sshd.host_key}.pub")
    assert real in r.error and "does not match" in r.error and "ssh-keygen -R" in r.fix
    assert not root.exists()                                      # nothing was done there
    # accept-new does not override a changed key
    [r] = deploy.flash(a, [sshd.address], accept_new_host_key=True, **kw)
    assert not r.ok and real in r.error

    kh.write_text("")
    [r] = deploy.flash(a, [sshd.address], **kw)
    assert not r.ok and "not in" in r.error and "--accept-new-host-key" in r.fix
    # trust on first use, only when asked: records the key, then works
    [r] = deploy.flash(a, [sshd.address], accept_new_host_key=True, **kw)
    assert r.ok, r.error
    assert Path(f"{sshd.host_key}.pub").read_text().split()[1] in kh.read_text()   # (names may be hashed)


def test_interrupted_upload_resumes_without_resending(sshd, artifacts, tmp_path):
    a, _ = artifacts
    root = tmp_path / "device"
    rid = artifact_id(a)
    partial = root / "releases" / f".{rid}.partial" / "model.onnx"
    killed = []

    def progress(device, name, done, size):
        # Drop the connection for real once >= 1 MiB of model.onnx sits on the device: kill
        # the ssh client this process started (by pid; only our own children).
        if name != "model.onnx" or killed or done < 2 << 20:
            return
        deadline = time.time() + 10
        while time.time() < deadline and (not partial.exists() or partial.stat().st_size < 1 << 20):
            time.sleep(0.02)
        for child in psutil.Process().children(recursive=True):
            if child.name() == "ssh":
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    [r1] = deploy.flash(a, [sshd.address], progress=progress, **sshd.kwargs(root, runtime="onnxruntime"))
    assert killed and not r1.ok and _current(root) is None
    on_device = partial.stat().st_size
    size = (a / "model.onnx").stat().st_size
    assert (1 << 20) <= on_device < size

    [r2] = deploy.flash(a, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r2.ok, r2.error
    assert r2.resumed_bytes >= on_device
    others = sum(p.stat().st_size for p in (root / "releases" / rid).rglob("*") if p.is_file()) - size
    # model.onnx: exactly the bytes that were missing; nothing already complete was sent again
    assert r2.bytes_sent <= (size - on_device) + others
    assert r2.bytes_sent < size
    assert _current(root) == rid


def test_a_release_on_the_device_is_verified_before_it_is_activated_again(sshd, artifacts, tmp_path):
    """One byte changed in a release already on the device: the re-flash finds it, sends that file
    alone again, and activates a release whose every file matches the manifest."""
    import hashlib

    a, _ = artifacts
    root = tmp_path / "device"
    [r1] = deploy.flash(a, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r1.ok, r1.error
    onnx_file = root / "releases" / artifact_id(a) / "model.onnx"
    with open(onnx_file, "r+b") as f:
        f.seek(onnx_file.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    [r2] = deploy.flash(a, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    assert r2.ok, r2.error
    assert r2.repaired == ["model.onnx"] and r2.bytes_sent == onnx_file.stat().st_size
    want = json.loads((a / "manifest.json").read_text())["files"]["model.onnx"]["sha256"]
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == want and _current(root) == artifact_id(a)


def test_manifest_paths_and_smoke_tokens_are_checked_before_anything_is_sent(sshd, artifacts, tmp_path):
    import shutil

    from dsedge.errors import UsageError

    a, _ = artifacts
    bad = tmp_path / "bad"
    shutil.copytree(a, bad)
    (tmp_path / "secret").write_text("not for the device")
    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["../secret"] = {"sha256": "0" * 64, "bytes": 18}
    (bad / "manifest.json").write_text(json.dumps(m))
    root = tmp_path / "device"
    with pytest.raises(UsageError, match=r"names '../secret', not a file inside the artifact"):
        deploy.flash(bad, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
    with pytest.raises(UsageError, match="--smoke-tokens 0 would activate a release without running it"):
        deploy.flash(a, [sshd.address], smoke_tokens=0, **sshd.kwargs(root, runtime="onnxruntime"))
    assert not root.exists()                                      # nothing reached the device


def test_a_device_without_the_space_is_told_so_and_left_as_it_was(sshd, artifacts, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the device's disk needs root (CI runs as root)")
    a, _ = artifacts
    root = tmp_path / "device"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], check=True)
    try:
        [r] = deploy.flash(a, [sshd.address], **sshd.kwargs(root, runtime="onnxruntime"))
        assert not r.ok and "MiB more on the device, its disk has" in r.error and r.bytes_sent == 0, r.error
        assert not list((root / "releases").glob(".*.partial")) and not (root / "current").exists()
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
