"""Budget overrides: target file < project dsedge.yaml < --budget NAME=VALUE."""
import pytest

from dsedge.errors import UsageError
from dsedge.targets import apply_budget_overrides, find_target, parse_cli_budgets


def test_cli_overrides(tmp_path):
    t = apply_budget_overrides(find_target("orin"), ["decode_tokens_per_s=30", "ttft_ms=400"], cwd=tmp_path)
    assert t.budgets.decode_tokens_per_s == 30 and t.budgets.ttft_ms == 400
    assert t.budgets.peak_memory_gb == 16                         # untouched: from the target file
    assert find_target("orin").budgets.decode_tokens_per_s == 20  # the loaded target is not modified


def test_project_file_then_cli(tmp_path):
    (tmp_path / "dsedge.yaml").write_text("budgets:\n  ttft_ms: 300\n  avg_power_w: null\ngate: {max_kl: 0.1}\n")
    t = apply_budget_overrides(find_target("orin"), [], cwd=tmp_path)
    assert t.budgets.ttft_ms == 300 and t.budgets.avg_power_w is None
    t = apply_budget_overrides(find_target("orin"), ["ttft_ms=250"], cwd=tmp_path)
    assert t.budgets.ttft_ms == 250
    (tmp_path / "dsedge.yaml").write_text("budgets:\n  ttft_ms: 300\nother_section: {x: 1}\n")
    with pytest.raises(UsageError, match="unknown section 'other_section'"):   # it would be silently ignored
        apply_budget_overrides(find_target("orin"), [], cwd=tmp_path)


def test_no_project_file_no_change(tmp_path):
    t = find_target("orin")
    assert apply_budget_overrides(t, [], cwd=tmp_path) is t


def test_explicit_project_file_must_exist(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        apply_budget_overrides(find_target("orin"), [], project_file=tmp_path / "nope.yaml")


@pytest.mark.parametrize("item,match", [
    ("speed=3", r"unknown budget 'speed'"),
    ("ttft_ms=fast", r"ttft_ms = 'fast' is not a number"),
    ("ttft_ms=-5", r"must be a positive finite number"),
    ("ttft_ms=0", r"must be a positive finite number"),
    ("ttft_ms=inf", r"must be a positive finite number"),
    ("ttft_ms", r"is not NAME=VALUE"),
    ("=3", r"is not NAME=VALUE"),
])
def test_bad_cli_budgets(item, match):
    with pytest.raises(UsageError, match=match) as e:
        parse_cli_budgets([item])
    assert e.value.fix


@pytest.mark.parametrize("text,match", [
    ("budgets:\n  tokens: 3\n", r"dsedge.yaml: budgets.tokens: unknown budget 'tokens'"),
    ("budgets:\n  ttft_ms: [1, 2]\n", r"budgets.ttft_ms: budget ttft_ms = \[1, 2\] is not a number"),
    ("budgets:\n  ttft_ms: true\n", r"is not a number"),
    ("budgets: 5\n", r"budgets: should be a mapping"),
    ("- a\n- b\n", r"does not hold a mapping"),
    ("budgets: {ttft_ms: 1\n", r"is not valid YAML"),
])
def test_bad_project_files_name_file_and_key(tmp_path, text, match):
    (tmp_path / "dsedge.yaml").write_text(text)
    with pytest.raises(UsageError, match=match):
        apply_budget_overrides(find_target("orin"), [], cwd=tmp_path)
