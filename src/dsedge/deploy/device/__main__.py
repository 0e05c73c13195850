"""python3 -m dsedge_device {smoke,bench,accuracy,generate} in a release folder (what `dsedge flash` and
`dsedge bench --device` run on the device; also usable by hand). Prints one JSON line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(prog="dsedge_device")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("smoke", help="greedy tokens for the given prompt ids")
    s.add_argument("--ids", required=True, help="comma-separated prompt token ids")
    s.add_argument("--n", type=int, default=8)
    b = sub.add_parser("bench")
    b.add_argument("--prompt-tokens", type=int, default=128)
    b.add_argument("--decode-tokens", type=int, default=64)
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--power-root", default="/")
    c = sub.add_parser("accuracy", help="the build's eval windows through this runtime, scored against the "
                       "FP16 reference's top ids (accuracy/*)")
    c.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                   help="sha256 the host's artifact gives for an accuracy file (checked besides the manifest's)")
    g = sub.add_parser("generate", help="generate text from a prompt (tokenizers)")
    g.add_argument("prompt")
    g.add_argument("--n", type=int, default=32)
    for q in (b, c):
        q.add_argument("--accuracy-level", type=int, default=1, choices=[0, 1, 2, 3, 4],
                       help="onnxruntime's MatMulNBits accuracy level (4: INT8 activations)")
    for q in (s, b, c, g):
        q.add_argument("--runtime", default="auto", choices=["auto", "tensorrt", "onnxruntime"])
        q.add_argument("--folder", default=".")
    a = p.parse_args(argv)
    folder = Path(a.folder)
    if a.cmd == "accuracy":
        return _accuracy(folder, a)
    if a.cmd == "bench":
        from .bench import run_bench
        res = run_bench(folder, a.runtime, a.prompt_tokens, a.decode_tokens, a.runs, a.warmup, a.power_root,
                        accuracy_level=a.accuracy_level)
    else:
        from .runtime import generate, open_decoder
        try:
            dec = open_decoder(folder, a.runtime)
        except ImportError as e:
            sys.stderr.write(f"cannot run the model on this device: {e} "
                             "(needs numpy + onnxruntime, or tensorrt, for this python)\n")
            return 5
        t = time.perf_counter()
        if a.cmd == "smoke":
            toks = generate(dec, [int(x) for x in a.ids.split(",")], a.n)
            res = {"runtime": dec.name, "tokens": toks, "seconds": time.perf_counter() - t}
        else:
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            cfg = json.loads((folder / "generation_config.json").read_text()) if (folder / "generation_config.json").is_file() else {}
            ids = tok.encode(a.prompt).ids
            out = generate(dec, ids, a.n, cfg.get("eos_token_id"))
            res = {"runtime": dec.name, "text": tok.decode(out), "tokens": out, "seconds": time.perf_counter() - t}
    print(json.dumps(res))
    return 0


def _accuracy(folder: Path, a) -> int:
    """Exit 6 when a file to read does not match what was flashed (nothing is run then)."""
    from .accuracy import Refused, run_accuracy

    given = dict(x.split("=", 1) for x in a.sha256)
    try:
        res = run_accuracy(folder, a.runtime, a.accuracy_level, given)
    except Refused as e:
        sys.stderr.write(f"refused: {e}\n")
        return 6
    except ImportError as e:
        sys.stderr.write(f"cannot run the model on this device: {e} "
                         "(needs numpy + onnxruntime, or tensorrt, for this python)\n")
        return 5
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
