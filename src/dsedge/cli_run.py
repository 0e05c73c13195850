"""`dsedge run`: a command on dsedge.cli_common.app (parsing and rendering only; dsedge.run does the work)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .cli_common import _run, app, console

_EXIT_WORDS = {"exit", "quit", "/exit", "/quit"}


@app.command("run")
def run_cmd(
    artifact: Path = typer.Argument(..., help="Artifact folder from `dsedge build`."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Prompt text. Without it: a prompt per line "
                                         "when stdin is a terminal (empty line, `exit` or Ctrl-D ends), else all of stdin."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", help="Most tokens generated (greedy; stops "
                                       "earlier at EOS or the model's context length)."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Wrap the prompt as a user turn with the "
                                       "tokenizer's chat template (R1 models: their <think> turn)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per prompt (text, token ids, "
                                 "timings) instead of streaming the text."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Generate on this device (user@host[:port]) "
                                         "with the artifact's release flashed there; text printed at the end."),
    runtime: str = typer.Option("auto", "--runtime", help="With --device: auto (TensorRT where the release has an "
                                "engine), tensorrt or onnxruntime."),
    root: Optional[str] = typer.Option(None, "--root", help="With --device: its root folder (default ~/dsedge)."),
    python: Optional[str] = typer.Option(None, "--python", help="With --device: python3 there."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="With --device: known_hosts file."),
    identity: Optional[Path] = typer.Option(None, "--identity", help="With --device: SSH private key."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key",
                                             help="With --device: trust an unknown host key on first use."),
    graph: str = typer.Option("auto", "--graph", help="On this host: auto (the host graph, fastest on CPU, where the "
                              "artifact has one), host, or standard (model.onnx)."),
):
    """Generate text from an artifact: greedy, on this host through onnxruntime (the artifact's
    model.onnx, KV cache fed back), streamed; prefill and decode tokens/s at the end."""
    def go():
        from .errors import UsageError
        from .run import Runner

        if runtime not in ("auto", "tensorrt", "onnxruntime"):
            raise UsageError(f"--runtime {runtime!r} is not one of auto, tensorrt, onnxruntime", "pick one of them")
        runner = Runner(artifact, graph=graph)
        dev_kw = dict(root=root, python=python, known_hosts=known_hosts, identity=identity,
                      accept_new_host_key=accept_new_host_key, runtime=runtime)

        def one(text: str) -> None:
            ids = runner.encode(text, chat_template)
            if device:
                g = runner.generate_on_device(ids, max_new_tokens, device, **dev_kw)
                if not as_json:
                    sys.stdout.write(g.text)
            else:
                g = runner.generate(ids, max_new_tokens, None if as_json else _write)
            if as_json:
                sys.stdout.write(json.dumps({"prompt": text, **g.to_dict()}) + "\n")
                sys.stdout.flush()
                return
            sys.stdout.write("\n")
            sys.stdout.flush()
            console.print(_speed(g), highlight=False, markup=False, soft_wrap=True)

        if prompt is not None:
            return one(prompt)
        if not sys.stdin.isatty():
            return one(sys.stdin.read())
        console.print(f"{artifact.name}: a prompt per line; an empty line, `exit` or Ctrl-D ends", highlight=False)
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if not line.strip() or line.strip() in _EXIT_WORDS:
                break
            one(line)
    _run(go)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _speed(g) -> str:
    stop = {"eos": "EOS", "max_new_tokens": "--max-new-tokens", "context": "the context length"}[g.stopped]
    graph = " (host graph)" if (g.graph or "").startswith("host") else ""
    head = f"[{g.runtime}{graph} on {g.where}: {len(g.prompt_ids)} prompt + {len(g.tokens)} new tokens, stopped at {stop}"
    if g.prefill_s is None:   # a device reports one time for the whole generation
        return head + f"; {g.total_s:.2f} s, {len(g.tokens) / max(g.total_s, 1e-9):.1f} tok/s incl. prompt]"
    prefill = f"prefill {g.prefill_tokens_per_s:.1f} tok/s ({g.prefill_s * 1e3:.1f} ms)"
    decode = "decode n/a (one token)" if g.decode_tokens_per_s is None else f"decode {g.decode_tokens_per_s:.1f} tok/s"
    return head + f"; {prefill}, {decode}]"
