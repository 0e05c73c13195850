"""dsedge.yaml, the project file: a section per stage (`budgets:` read by targets.budgets,
`gate:` by gate.thresholds). This module finds and parses the file; each reader checks its section."""
from __future__ import annotations

from pathlib import Path

from .errors import UsageError
from .safe_yaml import load_yaml

PROJECT_FILE = "dsedge.yaml"
SECTIONS = ("budgets", "gate")      # each read by its stage (targets.budgets, gate.thresholds)


def project_path(project_file: Path | None = None, cwd: Path | None = None) -> Path:
    """The named project file (which must exist), else ./dsedge.yaml (which may not)."""
    if project_file is not None:
        if not Path(project_file).is_file():
            raise UsageError(f"project file {project_file} does not exist", "give an existing dsedge.yaml")
        return Path(project_file)
    return (cwd or Path.cwd()) / PROJECT_FILE


def project_section(path: Path, name: str, example: str):
    """Section `name` of the project file at `path`: None when the file or the section is absent;
    a mapping otherwise (anything else is an error showing `example`)."""
    if not path.is_file():
        return None
    data = load_yaml(path, "project file")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a mapping", f"write e.g.\n{example}")
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:   # a misspelled section would silently switch the gate or the budgets off
        import difflib

        near = difflib.get_close_matches(str(unknown[0]), SECTIONS, n=1, cutoff=0.5)
        raise UsageError(f"{path}: unknown section {unknown[0]!r}" + (f" (did you mean {near[0]!r}?)" if near else ""),
                         f"use the sections {', '.join(SECTIONS)}")
    section = data.get(name)
    if section is not None and not isinstance(section, dict):
        raise UsageError(f"{path}: {name}: should be a mapping", f"write e.g.\n{example}")
    return section
