"""Threshold parsing and precedence: defaults < dsedge.yaml `gate:` < command line."""
import pytest

from dsedge.errors import UsageError
from dsedge.gate.thresholds import Limit, resolve_thresholds


def test_relative_and_absolute_limits():
    t, _ = resolve_thresholds({"max_ppl_increase": "2%", "max_size_increase": "0.5", "min_top1": "95%",
                               "max_kl": "0.01", "min_task_acc": "0.8"}, cwd=None)
    assert t.max_ppl_increase == Limit(0.02, True, "2%") and t.max_ppl_increase.allowed(10) == pytest.approx(10.2)
    assert t.max_size_increase.allowed(10) == pytest.approx(10.5) and not t.max_size_increase.relative
    assert t.min_top1 == pytest.approx(0.95) and t.max_kl == 0.01 and t.min_task_acc == 0.8
    assert t.origin("max_kl") == "command line"


def test_defaults_and_dropping_a_limit(tmp_path):
    t, base = resolve_thresholds({}, cwd=tmp_path)
    assert t.max_ppl_increase.relative and t.max_ppl_increase.value == pytest.approx(0.01)
    assert t.max_kl is None and t.max_latency_increase is None and base is None
    t, _ = resolve_thresholds({"max_ppl_increase": "none"}, cwd=tmp_path)
    assert t.max_ppl_increase is None


def test_project_file_then_cli(tmp_path):
    (tmp_path / "dsedge.yaml").write_text("gate:\n  max_kl: 0.02\n  max_latency_increase: 10%\n  baseline: b.json\n")
    t, base = resolve_thresholds({"max_kl": "0.5", "min_top1": None}, cwd=tmp_path)
    assert t.max_kl == 0.5 and t.max_latency_increase == Limit(0.1, True, "10%")
    assert base == str(tmp_path / "b.json") and t.origin("max_latency_increase") == str(tmp_path / "dsedge.yaml")


@pytest.mark.parametrize("yaml_text,match", [
    ("gate:\n  max_kll: 1\n", "unknown key gate.max_kll"),
    ("gate:\n  max_kl: lots\n", "gate.max_kl: max_kl = 'lots' is not a number"),
    ("gate:\n  max_kl: 5%\n", "a percentage only makes sense for a fraction"),
    ("gate:\n  min_top1: -1\n", "must be a finite number"),
    ("gate: 3\n", "gate: should be a mapping"),
    ("gate: [\n", "is not valid YAML"),
])
def test_bad_project_file(tmp_path, yaml_text, match):
    (tmp_path / "dsedge.yaml").write_text(yaml_text)
    with pytest.raises(UsageError, match=match) as e:
        resolve_thresholds({}, cwd=tmp_path)
    assert str(tmp_path / "dsedge.yaml") in e.value.problem and e.value.fix
