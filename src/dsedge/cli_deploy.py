"""`dsedge flash`, `dsedge devices`, `dsedge bench`: commands on dsedge.cli_common.app (parsing and rendering only)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .cli_common import _run, app, console, out

devices_app = typer.Typer(no_args_is_help=True, help="Devices reached over SSH.")
app.add_typer(devices_app, name="devices")

_DEVICE = typer.Option(None, "--device", "-d", help="user@host[:port], repeatable.")
_INVENTORY = typer.Option(None, "--inventory", "-i", help="fleet.yaml (`devices:` list of {address, name, root, python, runtime}) or an Ansible inventory (INI or YAML).")
_ROOT = typer.Option(None, "--root", help="Device root folder (releases/, current); default ~/dsedge on the device.")
_PYTHON = typer.Option(None, "--python", help="python3 on the device (needs numpy + onnxruntime or tensorrt + tokenizers).")
_KNOWN = typer.Option(None, "--known-hosts", help="known_hosts file (default: OpenSSH's, ~/.ssh/known_hosts).")
_IDENT = typer.Option(None, "--identity", help="SSH private key (default: OpenSSH's / the agent).")
_ACCEPT = typer.Option(False, "--accept-new-host-key",
                       help="Trust an unknown host key on first use and record it (a changed key is still refused).")
_JSON = typer.Option(False, "--json", help="Print the results as JSON.")


def _ssh_kwargs(root, python, known_hosts, identity, accept):
    return {"root": root, "python": python, "known_hosts": known_hosts, "identity": identity,
            "accept_new_host_key": accept}


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} B"


def _row(r) -> list[str]:
    result = "[green]ok[/green]" if r.ok else "[red]failed[/red]"
    if not r.ok:
        detail = r.error + (f"\nfix: {r.fix}" if r.fix else "")
    elif r.action == "status":
        i = r.info
        mem, pm = i.get("mem_available_bytes"), i.get("power_mode") or {}
        detail = (f"free memory {mem / 2**30:.1f} GiB" if mem else "free memory n/a") + \
                 (f", power mode {pm.get('name')} (id {pm.get('id')})" if pm else ", no nvpmodel")
    else:
        detail = r.smoke or ""
        if r.repaired:
            detail += f"\nre-sent {', '.join(r.repaired)}: the copy on the device did not match the manifest"
    row = [r.device, result, r.release or "", r.previous or "", r.platform or ""]
    if r.action == "flash":
        row += [r.runtime or "", _size(r.bytes_sent) + (f" (+{_size(r.resumed_bytes)} resumed)" if r.resumed_bytes else "")]
    return row + [detail]


def _results(results, as_json: bool, title: str) -> None:
    """The per-device table (or JSON); exit non-zero unless every device succeeded."""
    if as_json:
        out.print_json(json.dumps([r.to_dict() for r in results], default=str))
    else:
        t = Table(title=title)
        cols = ["device", "result", "release", "previous", "platform"]
        cols += ["runtime", "sent"] if results and results[0].action == "flash" else []
        for c in cols + ["detail"]:
            t.add_column(c, overflow="fold")
        for r in results:
            t.add_row(*_row(r))
        out.print(t)
    failed = [r for r in results if not r.ok]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} device(s) failed[/red]")
        raise typer.Exit(max(r.exit_code or 1 for r in failed))


@app.command("flash")
def flash_cmd(
    artifact: Optional[Path] = typer.Argument(None, help="Artifact folder from `dsedge build` (not with --rollback)."),
    device: Optional[List[str]] = _DEVICE, inventory: Optional[Path] = _INVENTORY,
    rollback: bool = typer.Option(False, "--rollback", help="Point each device back at its previous release."),
    runtime: str = typer.Option("auto", "--runtime",
                                help="auto (TensorRT; the engine is built there if the artifact has none), tensorrt, "
                                     "or onnxruntime (run the ONNX where a device has no TensorRT)."),
    smoke_tokens: int = typer.Option(8, "--smoke-tokens", help="Tokens the smoke test generates on the device."),
    parallel: int = typer.Option(8, "--parallel", help="Devices flashed at once."),
    root: Optional[str] = _ROOT, python: Optional[str] = _PYTHON, known_hosts: Optional[Path] = _KNOWN,
    identity: Optional[Path] = _IDENT, accept_new_host_key: bool = _ACCEPT, as_json: bool = _JSON,
):
    """Put an artifact on devices over SSH: resumable checked upload, engine built there, smoke
    test, atomic activation (releases/<id>, `current` symlink); the previous release is kept."""
    def go():
        from . import deploy
        from .errors import UsageError

        kw = _ssh_kwargs(root, python, known_hosts, identity, accept_new_host_key)
        if runtime not in ("auto", "tensorrt", "onnxruntime"):
            raise UsageError(f"--runtime {runtime!r} is not one of auto, tensorrt, onnxruntime", "pick one of them")
        if rollback:
            if artifact is not None:
                raise UsageError("--rollback takes no artifact", "drop the artifact argument")
            results = deploy.rollback(device or [], inventory, parallel=parallel, **kw)
            return _results(results, as_json, "rollback")
        if artifact is None:
            raise UsageError("no artifact given", "dsedge flash ARTIFACT --device user@host (or --rollback)")
        results = deploy.flash(artifact, device or [], inventory, runtime=runtime, smoke_tokens=smoke_tokens,
                               parallel=parallel, **kw)
        for r in results:
            if r.ok and r.runtime == "onnxruntime":
                console.print(f"{r.device}: runs the artifact's ONNX with onnxruntime (no TensorRT engine)")
        _results(results, as_json, f"flash {Path(artifact).name}")
    _run(go)


@devices_app.command("status")
def devices_status_cmd(device: Optional[List[str]] = _DEVICE, inventory: Optional[Path] = _INVENTORY,
                       root: Optional[str] = _ROOT, python: Optional[str] = _PYTHON,
                       known_hosts: Optional[Path] = _KNOWN, identity: Optional[Path] = _IDENT,
                       accept_new_host_key: bool = _ACCEPT, as_json: bool = _JSON):
    """Active release, TensorRT / JetPack, free memory and power mode of each device."""
    def go():
        from . import deploy
        results = deploy.devices_status(device or [], inventory, **_ssh_kwargs(root, python, known_hosts, identity,
                                                                                accept_new_host_key))
        _results(results, as_json, "devices")
    _run(go)


@app.command("bench")
def bench_cmd(
    artifact: Path = typer.Argument(..., help="Artifact folder (with --device: the one flashed there)."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Run on this device over SSH (user@host[:port])."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (TensorRT where importable with an engine), tensorrt, onnxruntime."),
    prompt_tokens: int = typer.Option(128, "--prompt-tokens", help="Prompt length of each timed run (tokens)."),
    decode_tokens: int = typer.Option(64, "--decode-tokens", help="Tokens decoded after the prompt in each timed run."),
    runs: int = typer.Option(5, "--runs", help="Timed runs (each: prompt, then --decode-tokens steps)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs first."),
    write: bool = typer.Option(True, "--write/--no-write", help="Record the figures in the artifact's report."),
    power_root: str = typer.Option("/", "--power-root", hidden=True, help="sysfs root for the power readers (tests)."),
    accuracy_level: int = typer.Option(1, "--accuracy-level", help="onnxruntime only: MatMulNBits accuracy level "
                                       "(1: float activations, as the build's checks; 4: INT8 activations, faster on CPU, "
                                       "onnxruntime-genai's int4 default)."),
    graph: str = typer.Option("auto", "--graph", help="This host, onnxruntime: auto (the host graph: MatMulNBits, "
                              "GroupQueryAttention, FP32 activations, where the artifact has one), host, or standard "
                              "(model.onnx, the graph TensorRT gets)."),
    accuracy: bool = typer.Option(False, "--accuracy", help="Also run the build's eval windows through the same "
                                  "runtime and score them against the FP16 reference the artifact carries: KL "
                                  "(top-64 ids + rest, a lower bound), top-1 agreement, perplexity."),
    root: Optional[str] = _ROOT, python: Optional[str] = _PYTHON, known_hosts: Optional[Path] = _KNOWN,
    identity: Optional[Path] = _IDENT, accept_new_host_key: bool = _ACCEPT, as_json: bool = _JSON,
):
    """Time to first token, per-token decode latency, peak memory, power and energy per token
    (and, with --accuracy, KL / top-1 / perplexity against FP16), measured where the engine runs;
    recorded in the artifact's report and budget table."""
    def go():
        from . import deploy
        b = deploy.bench(artifact, device, runtime=runtime, prompt_tokens=prompt_tokens, decode_tokens=decode_tokens,
                         runs=runs, warmup=warmup, power_root=power_root, write=write, accuracy_level=accuracy_level, graph=graph,
                         accuracy=accuracy, **_ssh_kwargs(root, python, known_hosts, identity, accept_new_host_key))
        if as_json:
            out.print_json(json.dumps(b, default=str))
            return
        t = Table(title=f"bench: {b['where']}, {b['runtime']}")
        t.add_column("metric")
        t.add_column("value")
        ttft, dec = b["ttft_ms"], b["decode_ms"]
        t.add_row("runtime", b["runtime"] + ("" if b["runtime"] == "tensorrt" else
                  f" (not TensorRT; MatMulNBits accuracy level {b.get('onnxruntime_accuracy_level', 1)})"))
        if b.get("graph"):
            t.add_row("graph", b["graph"])
        t.add_row("time to first token", f"{ttft['median']:.2f} ms median, p90 {ttft['p90']:.2f}, p99 {ttft['p99']:.2f} "
                  f"({b['prompt_tokens']}-token prompt, {b['runs']} runs after {b['warmup']} warm-up)")
        t.add_row("decode per token", f"{dec['median']:.2f} ms median, p90 {dec['p90']:.2f}, p99 {dec['p99']:.2f}")
        t.add_row("decode tokens/s", f"{b['decode_tokens_per_s']:.1f}")
        t.add_row("peak memory", f"{b['peak_memory_gb']:.3f} GiB ({b['memory_source']})")
        p = b.get("power")
        if p:
            avg = "n/a" if p["avg_w"] is None else f"{p['avg_w']:.2f} W"
            jpt = "n/a" if p["decode_j_per_token"] is None else f"{p['decode_j_per_token']:.4g} J/token"
            t.add_row("power", f"{avg} average, {jpt} decoding ({p['source']}, {p['samples']} samples)")
        else:
            t.add_row("power", "not measured (no power source readable)")
        plat = b.get("platform") or {}
        if plat.get("power_mode"):
            t.add_row("power mode", f"{plat['power_mode']['name']} (id {plat['power_mode']['id']})")
        if plat.get("clocks"):
            t.add_row("clocks", ", ".join(f"{k} {v:g}" for k, v in plat["clocks"].items()))
        for row in _accuracy_rows(b.get("accuracy")):
            t.add_row(*row)
        out.print(t)
        for w in plat.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {w}")
        if write:
            console.print(f"recorded in {artifact}/report.json (measured), bench.json, report.md")
    _run(go)


def _accuracy_rows(a: dict | None) -> list[tuple[str, str]]:
    """The bench table's rows for --accuracy: the device's figures beside the build's (host) ones."""
    if not a:
        return []
    b = a.get("build") or {}

    def was(k, fmt):
        return "" if b.get(k) is None else f" (build: {fmt.format(b[k])})"

    graph = f" over {a['graph']}" if a.get("graph") else ""
    return [("accuracy measured on", f"{a['where']}, {a['runtime']}{graph}: {a['windows']} eval windows of "
                                     f"{a['window_tokens']} tokens, {a['scored_positions']} scored positions"),
            (f"KL vs FP16 (top-{a['top_k']} + rest)", f"{a['kl']:.4g} nats/token, a lower bound" + was("kl", "{:.4g}")),
            ("top-1 agreement vs FP16", f"{a['top1_agreement']:.2%}" + was("top1_agreement", "{:.2%}")),
            ("perplexity", f"{a['perplexity']:.4f} (FP16 {a['fp16_reference_perplexity']:.4f}, "
                           f"{a['ppl_change_pct']:+.2f} %)" + was("perplexity", "{:.4f}"))]
