"""dsedge.yaml, the project file: a section per stage (`budgets:` read by targets.budgets,
`gate:` by gate.thresholds). This module finds and parses the file; each reader checks its section."""
from __future__ import annotations

from pathlib import Path

from .errors import UsageError

PROJECT_FILE = "dsedge.yaml"


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
    import yaml

    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML ({e})", "fix the file's syntax") from None
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror})", "check the file's permissions") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a mapping", f"write e.g.\n{example}")
    section = data.get(name)
    if section is not None and not isinstance(section, dict):
        raise UsageError(f"{path}: {name}: should be a mapping", f"write e.g.\n{example}")
    return section
