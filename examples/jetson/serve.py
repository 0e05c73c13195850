#!/usr/bin/env python3
"""A minimal HTTP server around the active release (standard library only besides the
runtime): POST /generate {"prompt": "...", "max_tokens": 64} -> {"text", "tokens", "seconds"};
GET /health -> {"release", "runtime"}. One request at a time (the engine has one context).

    python3 serve.py --release ~/dsedge/current --port 8080

dsedge-serve.service runs it under systemd; after `dsedge flash` (or --rollback) switches
`current`, `sudo systemctl restart dsedge-serve` loads the new release.
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _device_runtime(release: Path):
    """The runner package: the release's own dsedge_device (what `dsedge flash` ships), else the
    same code from this checkout (src/dsedge/deploy/device) or an installed dsedge, so an
    artifact folder from `dsedge build` runs too (onnxruntime on a host)."""
    import importlib.util

    if (release / "dsedge_device" / "runtime.py").is_file():
        sys.path.insert(0, str(release))
        from dsedge_device import runtime
        return runtime
    clone = Path(__file__).resolve().parents[2] / "src" / "dsedge" / "deploy" / "device"
    if (clone / "runtime.py").is_file():   # a package of its own name: it imports nothing of dsedge
        spec = importlib.util.spec_from_file_location("dsedge_device", clone / "__init__.py",
                                                      submodule_search_locations=[str(clone)])
        sys.modules["dsedge_device"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["dsedge_device"])
        from dsedge_device import runtime
        return runtime
    try:
        from dsedge.deploy.device import runtime
        return runtime
    except ImportError:
        sys.exit(f"{release} is neither a release from `dsedge flash` (no dsedge_device/ in it) nor run from a "
                 "dsedge checkout: pass --release with a flashed release, or run this file from the repository")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--release", type=Path, default=Path.home() / "dsedge" / "current")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--runtime", default="auto", choices=["auto", "tensorrt", "onnxruntime"])
    a = p.parse_args()
    release = a.release.resolve()             # pinned at start: a flash does not swap it mid-request
    rt = _device_runtime(release)
    generate, open_decoder = rt.generate, rt.open_decoder
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(release / "tokenizer.json"))
    gen = release / "generation_config.json"
    eos = json.loads(gen.read_text()).get("eos_token_id") if gen.is_file() else None
    dec = open_decoder(release, a.runtime)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                return self._send(200, {"release": release.name, "runtime": dec.name})
            self._send(404, {"error": "not found"})

        def do_POST(self):
            if self.path != "/generate":
                return self._send(404, {"error": "not found"})
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                prompt, n = str(req["prompt"]), min(int(req.get("max_tokens", 64)), 2048)
            except (ValueError, KeyError, TypeError):
                return self._send(400, {"error": 'send {"prompt": "...", "max_tokens": N}'})
            with lock:
                t = time.perf_counter()
                out = generate(dec, tok.encode(prompt).ids, n, eos)
                secs = time.perf_counter() - t
            self._send(200, {"text": tok.decode(out), "tokens": len(out), "seconds": round(secs, 3)})

    print(f"serving {release} ({dec.name}) on http://{a.host}:{a.port}", flush=True)
    ThreadingHTTPServer((a.host, a.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
