"""The CLI's output for programs and people: no wrapping off a terminal (or as --width / COLUMNS
say), progress lines as stages start and end, YAML that parses, --version, shell completion, help
for every option, and `plan` without torch."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest
import typer
import yaml
from typer.testing import CliRunner

from dsedge.cli import app
from dsedge.targets import find_target

# the read-per-token row of `dsedge plan` is longer than 80 columns: where it is cut, it is split
PLAN_ROW = "weights a decoded token reads"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _cli(*args, env=None):
    """`dsedge ARGS` in a subprocess with stdout a pipe (as `dsedge ... | cat` or a CI log)."""
    e = {k: v for k, v in ENV.items() if k not in ("COLUMNS", "GITHUB_ACTIONS")} | (env or {})
    return subprocess.run([sys.executable, "-m", "dsedge", *args], capture_output=True, text=True, env=e, timeout=120)


def _commands(cmd, path=()):
    yield path, cmd
    if hasattr(cmd, "list_commands"):   # a group (typer's click may be its own copy: duck-typed)
        ctx = type(cmd).context_class(cmd)
        for name in cmd.list_commands(ctx):
            yield from _commands(cmd.get_command(ctx, name), path + (name,))


def test_every_option_and_argument_of_every_command_has_help():
    missing = []
    for path, cmd in _commands(typer.main.get_command(app)):
        for p in cmd.params:
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"dsedge {' '.join(path)} {p.opts[0] if p.param_type_name == 'option' else p.name}")
    assert not missing, missing
    assert len(list(_commands(typer.main.get_command(app)))) > 10   # the walk reached the subcommands


def test_flags_are_shown_without_a_type():
    out = CliRunner().invoke(app, ["build", "--help"]).output
    assert "--overwrite" in out and "--act-order / --no-act-order" in out
    assert "<bool>" not in out


def test_version_is_the_installed_distribution_s():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"dsedge {metadata.version('dsedge')}"


def test_shell_completion_completes_command_names():
    env = {"_DSEDGE_COMPLETE": "complete_bash", "COMP_WORDS": "dsedge pl", "COMP_CWORD": "1"}
    r = CliRunner().invoke(app, [], prog_name="dsedge", env=env)
    assert r.exit_code == 0 and r.output.split() == ["plan"], r.output
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).output


@pytest.mark.parametrize("env", [{}, {"COLUMNS": "30"}])
def test_targets_show_yaml_parses_back_to_the_target(env):
    r = _cli("targets", "show", "orin", "--yaml", env=env)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == find_target("orin").to_dict()


def test_targets_show_json_and_yaml_together_is_a_usage_error():
    r = _cli("targets", "show", "orin", "--yaml", "--json")
    assert r.returncode == 2 and "pick one" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("env", [{}, {"GITHUB_ACTIONS": "true"}])
def test_piped_tables_are_not_wrapped(env):
    r = _cli("plan", env=env)
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if PLAN_ROW in line)
    assert "the embedding is a lookup)" in row and len(row) > 80


@pytest.mark.parametrize("args, env", [(["--width", "60"], {}), ([], {"COLUMNS": "60"})])
def test_width_and_columns_are_honoured(args, env):
    r = _cli(*args, "plan", env=env)
    assert r.returncode == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 60
    assert not any(PLAN_ROW in line and "lookup)" in line for line in r.stdout.splitlines())


def test_plain_progress_lines_are_written_as_each_stage_starts_and_ends(monkeypatch):
    """Off a terminal each stage's line is in the pipe before the stage's work ends (not when the build does)."""
    from rich.console import Console

    import dsedge.cli as cli

    r, w = os.pipe()
    os.set_blocking(r, False)
    with open(w, "w") as f:
        monkeypatch.setattr(cli, "console", Console(file=f, width=200))

        def read() -> str:
            try:
                return os.read(r, 65536).decode()
            except BlockingIOError:
                return ""

        with cli._progress(True) as stage:
            with stage("load"):
                started = read()
            done = read()
            with pytest.raises(RuntimeError), stage("export"):
                raise RuntimeError("boom")
            stopped = read()
    os.close(r)
    assert started.strip().endswith("stage load started") and started.count("\n") == 1
    assert "stage load done in" in done
    assert "stage export started" in stopped and "stage export stopped after" in stopped


def test_plan_does_not_import_torch(tmp_path):
    code = ("import sys\nfrom dsedge.cli import app\n"
            "try:\n    app(['plan', '--json'])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "assert not heavy, heavy\nprint('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
