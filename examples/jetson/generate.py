#!/usr/bin/env python3
"""Generate from a prompt on a Jetson with the TensorRT engine and the KV cache.

Runs against a release that `dsedge flash` put on the device (it ships the `dsedge_device`
package inside every release; dsedge itself is not needed here):

    python3 generate.py --release ~/dsedge/current "The capital of France is"

From a dsedge checkout it also runs an artifact folder as `dsedge build` wrote it (the same
runner, from src/dsedge/deploy/device; `dsedge run ARTIFACT` streams it with tokens/s):

    python3 examples/jetson/generate.py --release artifacts/<name> --runtime onnxruntime "Hello"

Needs python3 with numpy, tokenizers and JetPack's TensorRT binding (python3-libnvinfer);
--runtime onnxruntime runs the release's ONNX instead (pip install onnxruntime).
"""
import argparse
import json
import sys
import time
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prompt")
    p.add_argument("--release", type=Path, default=Path.home() / "dsedge" / "current")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--runtime", default="auto", choices=["auto", "tensorrt", "onnxruntime"])
    a = p.parse_args()
    release = a.release.resolve()
    rt = _device_runtime(release)
    generate, open_decoder = rt.generate, rt.open_decoder
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(release / "tokenizer.json"))
    gen = release / "generation_config.json"
    eos = json.loads(gen.read_text()).get("eos_token_id") if gen.is_file() else None
    t0 = time.perf_counter()
    dec = open_decoder(release, a.runtime)       # TensorRT: deserializes model.engine, two profiles
    t1 = time.perf_counter()
    ids = tok.encode(a.prompt).ids
    out = generate(dec, ids, a.max_tokens, eos)  # prompt once, then one token per step via the cache
    t2 = time.perf_counter()
    print(a.prompt + tok.decode(out))
    print(f"[{dec.name}: load {t1 - t0:.2f} s, {len(out)} tokens in {t2 - t1:.2f} s, "
          f"{len(out) / max(t2 - t1, 1e-9):.1f} tok/s incl. prompt]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
