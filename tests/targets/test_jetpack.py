"""Orin targets per JetPack: the target file's default (6.2 -> TensorRT 10.3) or `--jetpack 7.2`
(TensorRT 10.16), and the power budget a default build can meet."""
from pathlib import Path

import pytest
import yaml

from dsedge.errors import TargetError
from dsedge.targets import find_target, list_targets

REPO_TARGETS = Path(__file__).resolve().parents[2] / "targets"
ORINS = ("orin-agx-64", "orin-agx-32", "orin-nx-16", "orin-nano-8")


@pytest.mark.parametrize("name", ORINS)
def test_every_orin_runs_jetpack_6_2_and_7_2(name):
    t = find_target(name)
    assert {k: v.version for k, v in t.jetpack_releases.items()} == {"6.2": "10.3", "7.2": "10.16"}
    jp7 = find_target(name, jetpack="7.2")
    assert (jp7.tensorrt.version, jp7.tensorrt.jetpack, jp7.tensorrt.cuda) == ("10.16", "7.2", "13.2")
    assert list(jp7.jetpacks) == ["6.2"] and jp7.memory == t.memory and jp7.name == t.name
    assert jp7.for_jetpack("6.2").tensorrt == t.tensorrt


def test_jetpack_spellings_and_bad_values():
    assert find_target("orin", jetpack="jp7.2").tensorrt.version == "10.16"
    assert find_target("orin", jetpack="JetPack 7.2").tensorrt.version == "10.16"
    with pytest.raises(TargetError, match="has no JetPack 7.1") as e:
        find_target("orin", jetpack="7.1")
    assert "6.2, 7.2" in e.value.fix
    with pytest.raises(TargetError, match="not a Jetson target"):
        find_target("rtx", jetpack="7.2")


def _write(tmp_path, mutate):
    data = yaml.safe_load((REPO_TARGETS / "orin-agx-64.yaml").read_text())
    data["name"], data["aliases"] = "mine", []
    mutate(data)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["jetpacks"].update({"6.2": {"version": "10.3"}}), r"jetpacks: .*JetPack 6.2 is the default"),
    (lambda d: d["jetpacks"]["7.2"].update(jetpack="7.1"), r"jetpacks: .*differs from its key"),
    (lambda d: d["jetpacks"]["7.2"].update(version="ten"), r"jetpacks.7.2.version"),
    (lambda d: d["tensorrt"].pop("jetpack"), r"jetpacks is for Jetson targets"),
    # the default mode's 60 W over a 40 W budget: a default build could only say "unverified"
    (lambda d: d["budgets"].update(avg_power_w=40), r"budgets.avg_power_w 40 W is below power mode MAXN's 60 W"),
])
def test_bad_jetpacks_and_budgets_name_the_key(tmp_path, mutate, match):
    with pytest.raises(TargetError, match=match):
        find_target("mine", _write(tmp_path, mutate))


def test_a_lower_power_mode_meets_a_lower_budget(tmp_path):
    d = _write(tmp_path, lambda d: d.update(power_mode="30W") or d["budgets"].update(avg_power_w=30))
    assert find_target("mine", d).power_w == 30


def test_jetpack_needs_a_newer_tensorrt_for_its_precisions(tmp_path):
    # INT4 weight-only needs TensorRT 10.0: a JetPack entry with 8.6 fails when picked, naming it
    d = _write(tmp_path, lambda d: d["jetpacks"].update({"5.1.2": {"version": "8.5"}}))
    with pytest.raises(TargetError, match=r"mine with JetPack 5.1.2: .*int4_weight_only needs TensorRT >= 10.0"):
        find_target("mine", d, jetpack="5.1.2")


def test_every_shipped_default_power_mode_meets_its_budget():
    for t in list_targets().values():
        assert t.budgets.avg_power_w is None or t.power_w <= t.budgets.avg_power_w, t.name


def test_cli_jetpack_option():
    from typer.testing import CliRunner

    from dsedge.cli import app

    bad = CliRunner().invoke(app, ["plan", "--target", "orin", "--jetpack", "7.9"])
    assert bad.exit_code == 2 and "has no JetPack 7.9" in bad.output and "6.2, 7.2" in bad.output
    ok = CliRunner().invoke(app, ["plan", "--target", "orin", "--jetpack", "7.2", "--json"])
    assert ok.exit_code == 0, ok.output
