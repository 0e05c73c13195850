"""Shared fixtures: the project's reference checkpoints, exported graphs and built artifacts,
each produced once per session and shared across tests."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from dsedge import reference
from dsedge.archs import REGISTRY

if os.environ.get("PYTEST_XDIST_WORKER"):
    # n workers on n cores: one compute thread each (and in the CLI processes tests start, through
    # the environment). Two threads per worker on 2 cores oversubscribe them: torch's spinning
    # threads then wait on each other, which measured the suite at 23.5 min instead of < 20.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The dense (GQA) reference checkpoints: the tests parametrized over these run every method and
# export configuration. The MoE + MLA one (deepseek-v2-tiny) has its own module,
# tests/export/test_deepseek_v2.py: its trace alone takes ~2 min on 2 cores.
REFERENCE_NAMES = sorted(n for n, arch in reference.REFERENCE_MODELS.items() if REGISTRY[arch].moe is None)
MOE_REFERENCE = "deepseek-v2-tiny"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Builds in tests (and the CLI processes they start) cache into a folder of their own."""
    import os

    old = os.environ.get("DSEDGE_CACHE_DIR")
    os.environ["DSEDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("dsedge-cache"))
    yield
    if old is None:
        os.environ.pop("DSEDGE_CACHE_DIR", None)
    else:
        os.environ["DSEDGE_CACHE_DIR"] = old


@pytest.fixture(params=REFERENCE_NAMES)
def ref_name(request) -> str:
    return request.param


@pytest.fixture
def ckpt_copy(tmp_path):
    """A writable copy of a reference checkpoint, to corrupt in bad-input tests."""
    def make(name: str = reference.DEFAULT_MODEL):
        dst = tmp_path / name
        shutil.copytree(reference.checkpoint_path(name), dst)
        return dst
    return make


class _Cache:
    def __init__(self, factory):
        self.root = factory.mktemp("shared")
        self.items = {}

    def get(self, key, make):
        if key not in self.items:
            self.items[key] = make(self.root / "-".join(map(str, key)))
        return self.items[key]


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    return _Cache(tmp_path_factory)


@pytest.fixture(scope="session")
def exported(shared):
    """exported(name, config, dtype) -> (onnx path, fake-quantized torch model, QuantResult)."""
    from dsedge.export import export_onnx
    from dsedge.load import open_checkpoint
    from dsedge.quantize import WeightSource, apply_fake_quant, quantize_model

    def make(name, config, dtype=torch.float32, mutate=None):
        def build(folder):
            folder.mkdir(parents=True)
            ckpt = open_checkpoint(reference.checkpoint_path(name))
            model = ckpt.load_model(torch.float32)
            source = WeightSource(lambda k: ckpt.tensor(k).float())
            qres = quantize_model(config, source, ckpt.spec, ckpt.n_layers, lambda n: ckpt.index[f"{n}.weight"].shape[1])
            qres.weights = dict(qres.weights)  # materialise, so tests can edit one weight
            if mutate:
                mutate(qres)
            res = export_onnx(ckpt.config, source.tensor, qres.weights, qres.spec, folder / "model.onnx", dtype)
            return res.path, apply_fake_quant(model, qres.weights), qres
        return shared.get((name, config.label(), str(dtype), mutate.__name__ if mutate else ""), build)
    return make


@pytest.fixture(scope="session")
def built(shared):
    """built(name, method, bits) -> BuildResult of a full `dsedge.build` (shared by e2e tests)."""
    import dsedge
    from dsedge.quantize import config_from_options
    from dsedge.quantize.calibrated import CalibratedConfig

    def make(name, method=None, bits=None):
        def go(folder):
            quant = config_from_options(method, bits)
            calib = None
            if isinstance(quant, CalibratedConfig):  # a small recipe (8 x 128 tokens) keeps AWQ's grid search quick on CPU
                calib = folder.parent / f"calib-{folder.name}.yaml"
                calib.write_text(f"source: {reference.calib_text_path()}\nsamples: 8\nseq_len: 128\nseed: 0\n")
            return dsedge.build(reference.checkpoint_path(name), target="orin", quant=quant, output=folder,
                                calib_spec=calib)
        return shared.get((name, method, bits), go)
    return make


def pytest_configure(config):
    # `--dist loadfile` hands files out largest (most tests) first; the order is set below instead,
    # the same but for the README test, which is one long file of two tests
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Files with the most tests first (xdist's own order), but the README test (about 10 minutes
    of builds in one test) before them all: handed out last, it would run alone at the end."""
    import collections

    per_file = collections.Counter(it.path for it in items)
    items.sort(key=lambda it: (it.path.name != "test_readme.py", -per_file[it.path]))
