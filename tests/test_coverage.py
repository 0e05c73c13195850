"""Meta-test: every registered architecture, method and target is exercised by the suite."""
from pathlib import Path

from dsedge import reference
from dsedge.archs import supported
from dsedge.quantize import HANDLERS, METHODS, handler_for
from dsedge.targets import list_targets

TESTS = Path(__file__).parent


def test_every_architecture_has_a_reference_checkpoint():
    # tests parametrized over `ref_name` (export numerics, end-to-end builds) cover the dense ones;
    # the MoE + MLA checkpoint is built end to end in its own module
    from tests.conftest import MOE_REFERENCE, REFERENCE_NAMES

    specs = {s.name: s for s in supported()}
    assert set(reference.REFERENCE_MODELS.values()) == set(specs)
    moe = {n for n, a in reference.REFERENCE_MODELS.items() if specs[a].moe is not None}
    assert moe == {MOE_REFERENCE} and set(REFERENCE_NAMES) == set(reference.REFERENCE_MODELS) - moe
    assert "MOE_REFERENCE" in (TESTS / "export" / "test_deepseek_v2.py").read_text()


def test_every_method_is_built_end_to_end():
    from tests.test_build import BUILD_METHODS

    assert sorted(BUILD_METHODS) == sorted(METHODS)
    for cls in METHODS.values():   # registered for the exact type
        assert HANDLERS[cls] is handler_for(cls())


def test_every_target_file_is_validated():
    from tests.targets.test_schema import REPO_TARGETS

    shipped = {p.stem for p in REPO_TARGETS.glob("*.yaml")}
    assert shipped and shipped == set(list_targets())
