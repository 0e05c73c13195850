from pathlib import Path

import pytest
import yaml

from dsedge.errors import TargetError
from dsedge.targets import find_target, list_targets, targets_dirs

REPO_TARGETS = Path(__file__).resolve().parents[2] / "targets"


def test_orin_alias_and_facts():
    t = find_target("orin")
    assert t.name == "orin-agx-64" and t.gpu.compute_capability == "8.7"
    assert t.memory.bandwidth_gbs == 204.8 and t.tensorrt.version == "10.3"
    assert "fp8" not in t.precisions  # FP8 needs compute capability >= 8.9


@pytest.mark.parametrize("name", sorted(p.stem for p in REPO_TARGETS.glob("*.yaml")))
def test_every_shipped_target_validates(name):
    t = list_targets()[name]
    assert t.memory.usable_gb <= t.memory.total_gb
    assert t.source_file


def _write(tmp_path, mutate):
    data = yaml.safe_load((REPO_TARGETS / "orin-agx-64.yaml").read_text())
    data["name"], data["aliases"] = "mine", []
    mutate(data)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_user_targets_dir(tmp_path):
    d = _write(tmp_path, lambda d: d["budgets"].update(decode_tokens_per_s=99))
    assert find_target("mine", d).budgets.decode_tokens_per_s == 99
    assert targets_dirs(d)[0] == d


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(colour="green"), r"mine.yaml: colour: unknown key"),
    (lambda d: d["memory"].update(bandwidth_gbs="fast"), r"mine.yaml: memory.bandwidth_gbs: input should be a valid number"),
    (lambda d: d["budgets"].update(tokens=3), r"budgets.tokens: unknown key"),
    (lambda d: d.update(precisions=["int3"]), r"precisions.0"),
])
def test_bad_target_files_name_file_and_key(tmp_path, mutate, match):
    d = _write(tmp_path, mutate)
    with pytest.raises(TargetError, match=match):
        find_target("mine", d)


def test_unknown_target_lists_known_ones():
    with pytest.raises(TargetError, match="unknown target 'mars'") as e:
        find_target("mars")
    assert "orin-agx-64 (orin)" in e.value.fix
