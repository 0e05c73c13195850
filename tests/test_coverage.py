"""Meta-test: every registered architecture, method and target is exercised by the suite."""
from pathlib import Path

from dsedge import reference
from dsedge.load import ARCHITECTURES
from dsedge.quantize import HANDLERS, METHODS, handler_for
from dsedge.targets import list_targets

TESTS = Path(__file__).parent


def test_every_architecture_has_a_reference_checkpoint():
    # tests parametrized over `ref_name` (export numerics, end-to-end builds) then cover each one
    assert set(reference.REFERENCE_MODELS.values()) == set(ARCHITECTURES)


def test_every_method_is_built_end_to_end():
    from tests.test_build import BUILD_METHODS

    assert sorted(BUILD_METHODS) == sorted(METHODS)
    for cls in METHODS.values():
        assert handler_for(cls()) in HANDLERS.values()


def test_every_target_file_is_validated():
    from tests.targets.test_schema import REPO_TARGETS

    shipped = {p.stem for p in REPO_TARGETS.glob("*.yaml")}
    assert shipped and shipped == set(list_targets())
