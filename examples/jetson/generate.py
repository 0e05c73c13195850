#!/usr/bin/env python3
"""Generate from a prompt on a Jetson with the TensorRT engine and the KV cache.

Runs against a release that `dsedge flash` put on the device (it ships the `dsedge_device`
package inside every release; dsedge itself is not needed here):

    python3 generate.py --release ~/dsedge/current "The capital of France is"

Needs python3 with numpy, tokenizers and JetPack's TensorRT binding (python3-libnvinfer);
--runtime onnxruntime runs the release's ONNX instead (pip install onnxruntime).
"""
import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prompt")
    p.add_argument("--release", type=Path, default=Path.home() / "dsedge" / "current")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--runtime", default="auto", choices=["auto", "tensorrt", "onnxruntime"])
    a = p.parse_args()
    release = a.release.resolve()
    sys.path.insert(0, str(release))          # the release's own dsedge_device package
    from dsedge_device.runtime import generate, open_decoder
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
