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


@pytest.mark.parametrize("alias,name", [("orin", "orin-agx-64"), ("rtx", "rtx-4090"), ("nano", "orin-nano-8"),
                                        ("orin-nx", "orin-nx-16"), ("l40", "l40"), ("h100", "h100")])
def test_aliases_resolve(alias, name):
    assert find_target(alias).name == name


def test_shipped_targets_are_consistent():
    ts = list_targets()
    assert set(ts) >= {"orin-agx-64", "orin-agx-32", "orin-nx-16", "orin-nano-8", "rtx-4090", "l40", "h100"}
    for t in ts.values():
        assert ("fp8" in t.precisions) == (t.gpu.cc >= (8, 9)), t.name
        assert t.profile.max_prompt <= t.profile.max_context and t.power_w > 0
        assert (t.kind == "jetson") == (t.tensorrt.jetpack is not None), t.name
    assert ts["rtx-4090"].gpu.hardware_compat_group == ts["l40"].gpu.hardware_compat_group
    assert ts["h100"].gpu.hardware_compat_group != ts["l40"].gpu.hardware_compat_group
    assert {ts[n].tensorrt.version for n in ("orin-agx-64", "orin-agx-32", "orin-nx-16", "orin-nano-8")} == {"10.3"}


def test_nano_super_mode():
    nano = find_target("nano")
    assert nano.power_mode == "MAXN_SUPER" and nano.memory.bandwidth_gbs == 102
    base = nano.at_mode("15W")
    assert base.memory.bandwidth_gbs == 68 and base.compute.int8_dense_tops == 20 and base.power_w == 15
    assert nano.at_mode("25W").memory.bandwidth_gbs == 102          # no figures of its own: inherits
    with pytest.raises(TargetError, match="no power mode 'turbo'"):
        nano.at_mode("turbo")


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(precisions=["fp16", "fp8"]), r"mine.yaml: precisions: .*fp8 needs compute capability >= 8.9"),
    (lambda d: d["tensorrt"].update(version="8.6"), r"precisions: .*int4_weight_only needs TensorRT >= 10.0"),
    (lambda d: d.update(power_mode="turbo"), r"mine.yaml: power_mode: .*'turbo' is not one of power_modes"),
    (lambda d: d["memory"].update(usable_gb=100), r"mine.yaml: memory: .*usable_gb 100 exceeds total_gb 64"),
    (lambda d: d["profile"].update(max_prompt=8192), r"mine.yaml: profile: .*max_prompt 8192 exceeds max_context"),
    (lambda d: d["gpu"].update(compute_capability=8.7), r"gpu.compute_capability: input should be a valid string"),
    (lambda d: d["power_modes"]["MAXN"].update(volts=3), r"power_modes.MAXN.volts: unknown key"),
    (lambda d: d["efficiency"].update(decode_bandwidth=1.5), r"efficiency.decode_bandwidth: input should be less"),
    (lambda d: d.pop("efficiency"), r"mine.yaml: efficiency: field required"),
    (lambda d: d.update(source_file="x"), r"mine.yaml: source_file: unknown key"),
])
def test_inconsistent_target_files_name_file_and_key(tmp_path, mutate, match):
    d = _write(tmp_path, mutate)
    with pytest.raises(TargetError, match=match):
        find_target("mine", d)


def test_unknown_target_lists_known_ones():
    with pytest.raises(TargetError, match="unknown target 'mars'") as e:
        find_target("mars")
    assert "orin-agx-64 (orin)" in e.value.fix
