"""The device side of flash / rollback / status: one self-contained stdlib script.

dsedge never needs to be installed on a device. Every control command runs as
`python3 -c BOOT <command> <args>` over SSH, with this file's source sent on stdin ahead of any
payload (BOOT reads a length line, then exactly that many bytes, and executes them). Nothing here
may import dsedge or anything outside the standard library.

Layout under the device root:
  releases/<id>/           activated releases (complete, verified, smoke-tested)
  releases/.<id>.partial/  an upload in progress; kept after a failure so the next flash resumes
  releases/state.json      activation history, oldest first (written by rename)
  current -> releases/<id> switched by renaming a fresh symlink over it (rename(2) is atomic)
"""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

CHUNK = 1 << 20
KEEP = 3     # releases kept on the device: the active one, the previous one, one more


def _root(path):
    return os.path.abspath(os.path.expanduser(path))


def _releases(root):
    return os.path.join(root, "releases")


def _staging(root, rid):
    return os.path.join(_releases(root), "." + rid + ".partial")


def _state_path(root):
    return os.path.join(_releases(root), "state.json")


def _read_state(root):
    try:
        with open(_state_path(root)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"history": []}


def _write_atomic(path, text):
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _current(root):
    link = os.path.join(root, "current")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link).rstrip("/"))


def _switch(root, rid):
    """Point `current` at releases/<rid> with one rename of a fresh symlink over it."""
    tmp = os.path.join(root, ".current.tmp-%d" % os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", rid), tmp)
    os.replace(tmp, os.path.join(root, "current"))
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _fail(msg, code=3):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


# ---------------------------------------------------------------- probe
def _run(cmd, timeout=10):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return r.stdout.decode(errors="replace") if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _tensorrt_version():
    try:
        import tensorrt
        return tensorrt.__version__
    except Exception:
        pass
    # JetPack's Debian packages when the Python binding is missing (dpkg name: tensorrt / libnvinfer10)
    text = _run(["dpkg-query", "-W", "-f", "${Version}", "tensorrt"]) or _run(["dpkg-query", "-W", "-f", "${Version}", "libnvinfer10"])
    if text:
        return text.split("-")[0].split("+")[0]
    return None


def _gpu():
    """Name and compute capability through the CUDA driver API (ctypes); None without a driver."""
    import ctypes
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    if (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), 0) or cuda.cuDeviceGetName(name, 256, dev)
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)):
        return None
    return {"gpu_name": name.value.decode(errors="replace"), "compute_capability": "%d.%d" % (major.value, minor.value)}


def _l4t():
    import re
    try:
        text = open("/etc/nv_tegra_release").read()
    except OSError:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return "r%s.%s" % (m.group(1), m.group(2)) if m else None


def _meminfo():
    out = {}
    try:
        for line in open("/proc/meminfo"):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def _power_mode():
    text = _run(["nvpmodel", "-q"])
    if not text:
        return None
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    name = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("NV Power Mode")), None)
    mode_id = next((l for l in lines if l.isdigit()), None)
    return {"name": name, "id": int(mode_id) if mode_id else None}


def _has(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def cmd_probe(root):
    import platform
    mem = _meminfo()
    st = _read_state(root)
    try:
        free = shutil.disk_usage(root if os.path.isdir(root) else os.path.dirname(root) or "/").free
    except OSError:
        free = None
    model = None
    try:
        model = open("/proc/device-tree/model").read().strip("\x00\n ")
    except OSError:
        pass
    trtexec = next((p for p in ("/usr/src/tensorrt/bin/trtexec", shutil.which("trtexec") or "") if p and os.access(p, os.X_OK)), None)
    _out({"python": sys.executable, "python_version": platform.python_version(), "machine": platform.machine(),
          "hostname": platform.node(), "board": model, "l4t": _l4t(), "tensorrt": _tensorrt_version(),
          "gpu": _gpu(), "trtexec": trtexec, "dsedge": shutil.which("dsedge"),
          "modules": {m: _has(m) for m in ("numpy", "onnxruntime", "tokenizers", "tensorrt", "pynvml")},
          "mem_total_bytes": mem.get("MemTotal"), "mem_available_bytes": mem.get("MemAvailable"),
          "disk_free_bytes": free, "power_mode": _power_mode(),
          "current": _current(root), "history": st["history"]})


# ---------------------------------------------------------------- upload
def _free(root):
    st = os.statvfs(_releases(root))
    return st.f_bavail * st.f_frsize


def cmd_prepare(root, rid):
    """stdin: {"name": sha256} of the release. A release already on the device is trusted only
    when every file matches: one that does not is moved back to staging, its wrong files deleted
    (re-sent). -> sizes of what staging holds, the files repaired, the free bytes."""
    expected = json.loads(sys.stdin.buffer.read() or b"{}")
    final = os.path.join(_releases(root), rid)
    stage = _staging(root, rid)
    repaired = []
    if os.path.isdir(final):
        for name, sha in sorted(expected.items()):
            p = _inside(final, name)
            if not os.path.isfile(p) or _sha256(p) != sha:
                repaired.append(name)
        if not repaired:
            _out({"release_exists": True, "files": {}, "repaired": [], "free_bytes": _free(root)})
            return
        shutil.rmtree(stage, ignore_errors=True)
        os.rename(final, stage)
        for name in repaired:
            p = _inside(stage, name)
            if os.path.isfile(p):
                os.unlink(p)
    os.makedirs(stage, exist_ok=True)
    files = {}
    for d, _, names in os.walk(stage):
        for n in names:
            p = os.path.join(d, n)
            files[os.path.relpath(p, stage)] = os.path.getsize(p)
    _out({"release_exists": False, "files": files, "repaired": repaired, "free_bytes": _free(root)})


def cmd_abort(root, rid):
    """Remove the staging folder of an upload that cannot finish (not enough space)."""
    shutil.rmtree(_staging(root, rid), ignore_errors=True)
    _out({"removed": rid, "free_bytes": _free(root)})


def _inside(base, rel):
    p = os.path.normpath(os.path.join(base, rel))
    if os.path.isabs(rel) or not p.startswith(base + os.sep):
        _fail("refusing path outside the release: %r" % rel)
    return p


def cmd_receive(root, rid):
    """Frames on stdin: a JSON header line {"name", "offset", "length"}, then `length` bytes,
    appended to the staging file (which must be exactly `offset` long). A dropped connection
    leaves a correct prefix on disk; the next flash resumes from its size."""
    stage = _staging(root, rid)
    inp = sys.stdin.buffer
    while True:
        line = inp.readline()
        if not line:
            break
        hdr = json.loads(line)
        path = _inside(stage, hdr["name"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        have = os.path.getsize(path) if os.path.exists(path) else 0
        if have != hdr["offset"]:
            _fail("%s: device has %d bytes, sender resumes at %d" % (hdr["name"], have, hdr["offset"]))
        left = hdr["length"]
        try:
            with open(path, "ab", buffering=0) as f:
                while left:
                    block = inp.read1(min(CHUNK, left))   # what has arrived: lands on disk as it comes
                    if not block:
                        _fail("connection closed with %d bytes of %s left" % (left, hdr["name"]))
                    f.write(block)
                    left -= len(block)
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            shutil.rmtree(stage, ignore_errors=True)   # a full disk is not left full
            _fail("no space left on the device's disk while receiving %s: the partial upload was removed "
                  "(%d bytes free now)" % (hdr["name"], _free(root)), 4)
        _out({"done": hdr["name"]})


def cmd_verify(root, rid):
    """stdin: {"name": sha256}. Files that are complete but wrong are deleted (re-sent next time)."""
    expected = json.loads(sys.stdin.buffer.read())
    stage = _staging(root, rid)
    bad = {}
    for name, sha in sorted(expected.items()):
        p = _inside(stage, name)
        got = _sha256(p) if os.path.isfile(p) else None
        if got != sha:
            bad[name] = got
            if got is not None:
                os.unlink(p)
    _out({"bad": bad})


# ---------------------------------------------------------------- build / smoke in staging
def _tail(text, n=2000):
    return text[-n:]


def cmd_build(root, rid):
    """Run the artifact's build_engine.sh in the staging folder (dsedge or trtexec there)."""
    stage = _staging(root, rid)
    t = time.time()
    r = subprocess.run(["sh", "build_engine.sh"], cwd=stage, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = r.stdout.decode(errors="replace")
    with open(os.path.join(stage, "engine_build.log"), "w") as f:
        f.write(log)
    ok = r.returncode == 0 and os.path.isfile(os.path.join(stage, "model.engine"))
    _out({"ok": ok, "returncode": r.returncode, "seconds": round(time.time() - t, 1), "log_tail": _tail(log)})


def cmd_run(root, rid, *args):
    """python3 -m dsedge_device ARGS in the release (the staging folder while flashing, else the
    release; "current" for the active one), in this same interpreter."""
    import runpy
    where = _staging(root, rid)
    if not os.path.isdir(where):
        where = os.path.join(_releases(root), rid)
    if rid == "current":
        where = os.path.join(root, "current")
    if not os.path.isdir(where):
        _fail("no release %s under %s" % (rid, root))
    os.chdir(where)
    sys.path.insert(0, where)
    sys.argv = ["dsedge_device"] + list(args)
    runpy.run_module("dsedge_device", run_name="__main__", alter_sys=True)


# ---------------------------------------------------------------- activation
def _prune(root, history):
    keep = set(history[-KEEP:])
    rel = _releases(root)
    for name in os.listdir(rel):
        p = os.path.join(rel, name)
        if name.startswith(".") or name == "state.json" or name in keep or not os.path.isdir(p):
            continue
        shutil.rmtree(p, ignore_errors=True)


def cmd_activate(root, rid):
    rel = _releases(root)
    final, stage = os.path.join(rel, rid), _staging(root, rid)
    if not os.path.isdir(final):
        if not os.path.isdir(stage):
            _fail("nothing uploaded for release %s" % rid)
        os.rename(stage, final)
    previous = _current(root)
    _switch(root, rid)
    st = _read_state(root)
    hist = [h for h in st["history"] if h != rid] + [rid]
    if previous and previous not in hist:
        hist.insert(len(hist) - 1, previous)
    st["history"] = hist
    st.setdefault("activated", {})[rid] = int(time.time())
    _write_atomic(_state_path(root), json.dumps(st, indent=1))
    _prune(root, hist)
    _out({"current": rid, "previous": previous})


def cmd_rollback(root):
    st = _read_state(root)
    cur = _current(root)
    hist = [h for h in st["history"] if os.path.isdir(os.path.join(_releases(root), h))]
    if cur in hist:
        hist = hist[:hist.index(cur)] + hist[hist.index(cur) + 1:]
    else:
        hist = hist[:]
    if not hist:
        _fail("no previous release to roll back to (active: %s)" % cur, 4)
    target = hist[-1]
    _switch(root, target)
    st["history"] = hist
    _write_atomic(_state_path(root), json.dumps(st, indent=1))
    _out({"current": target, "previous": cur})


def cmd_releases(root):
    rel = _releases(root)
    names = sorted(n for n in os.listdir(rel) if os.path.isdir(os.path.join(rel, n))) if os.path.isdir(rel) else []
    _out({"current": _current(root), "history": _read_state(root)["history"], "releases": names})


COMMANDS = {"probe": cmd_probe, "prepare": cmd_prepare, "abort": cmd_abort, "receive": cmd_receive,
            "verify": cmd_verify,            "build": cmd_build, "run": cmd_run, "activate": cmd_activate, "rollback": cmd_rollback,
            "releases": cmd_releases}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        _fail("usage: remote.py {%s} ROOT [...]" % ",".join(COMMANDS), 2)
    root = _root(argv[1])
    if argv[0] not in ("probe", "releases"):
        os.makedirs(_releases(root), exist_ok=True)
    COMMANDS[argv[0]](root, *argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
