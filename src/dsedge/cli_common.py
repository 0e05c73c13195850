"""What the `dsedge` command modules share: the typer app, the consoles and the error wrapper.

dsedge.cli (the entry point), dsedge.cli_gate and dsedge.cli_deploy declare their commands on this
app; they import from here and this module imports none of them, so the arrows run one way."""
from __future__ import annotations

import os
import signal
import sys
from typing import Optional

import typer
from rich.console import Console

# llm-compressor draws tqdm bars per layer; tqdm reads TQDM_* variables when it is imported, so
# this must be set before any library is: dsedge shows its own stage bars.
os.environ.setdefault("TQDM_DISABLE", "1")

# rich_markup_mode=None: click's plain help (no "<bool>" after flags, no boxes cut at the terminal's width)
app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Quantize, export and check DeepSeek checkpoints for TensorRT edge targets.")
console = Console(stderr=True)
out = Console()
_state = {"debug": False}

# Where output is read by a program (a pipe, a file, a CI log) rich would cut it at 80 columns and
# split values across lines: there it is as wide as its content instead, unless --width / COLUMNS says.
WIDE = 10_000


def is_terminal(c: Console) -> bool:
    """A person's terminal: a TTY and not a GitHub Actions log (whose runner may attach a pseudo-TTY)."""
    return c.is_terminal and os.environ.get("GITHUB_ACTIONS", "").lower() != "true"


def set_width(width: int | None = None) -> None:
    """Width of both consoles: --width, else COLUMNS, else the terminal's, else WIDE (no wrapping)."""
    columns = os.environ.get("COLUMNS", "")
    for c in (console, out):
        chosen = width or (int(columns) if columns.isdigit() and int(columns) > 0 else None)
        c.soft_wrap = chosen is None and not is_terminal(c)
        if chosen is not None:
            c.width = chosen
        elif is_terminal(c):
            c._width = None            # the terminal's size, as rich measures it (undo an earlier call)
        else:
            c.width = WIDE


def version() -> str:
    """The installed distribution's version (importlib.metadata), else the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("dsedge")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dsedge {version()}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
          width: Optional[int] = typer.Option(None, "--width", min=20,
                                              help="Columns of the output (default: the terminal's; COLUMNS; "
                                                   "unlimited when not a terminal)."),
          _version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                        help="Print dsedge's version and exit.")):
    _state["debug"] = debug
    set_width(width)


def _run(fn):
    """Call fn; turn dsedge errors, Ctrl-C and SIGTERM into one clear line and an exit code."""
    from .errors import BuildInterrupted, DsedgeError

    def on_term(signum, frame):
        err = BuildInterrupted("interrupted by SIGTERM; no artifact was written")
        err.exit_code = 128 + signum
        # raised wherever Python is; if that is a __del__, Python ignores it, so the stage hook
        # (_progress) raises it again at the next stage boundary, before any artifact is renamed in
        _state["terminated"] = err
        raise err

    signal.signal(signal.SIGTERM, on_term)

    def unraisable(hook_args, default=sys.unraisablehook):
        if not isinstance(hook_args.exc_value, (BuildInterrupted, KeyboardInterrupt)):
            default(hook_args)
    sys.unraisablehook = unraisable   # an interrupt that landed in a __del__: re-raised, not printed
    # Ctrl-C raises KeyboardInterrupt even when the parent started us with SIGINT ignored (as
    # shells do for background jobs): an interrupt always ends the build cleanly.
    def on_int(signum, frame):
        _state["terminated"] = KeyboardInterrupt()   # re-raised at the next stage boundary, as on_term's
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_int)
    try:
        return fn()
    except KeyboardInterrupt:
        console.print("[red]error:[/red] interrupted; no artifact was written")
        raise typer.Exit(130)
    except DsedgeError as e:
        if _state["debug"]:
            console.print_exception()
        from rich.markup import escape   # a message quoting "[begin, end]" is text, not markup

        console.print(f"[red]error:[/red] {escape(e.problem)}", highlight=False, soft_wrap=True)
        if e.fix:
            console.print(f"  [bold]fix:[/bold] {escape(e.fix)}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code)
