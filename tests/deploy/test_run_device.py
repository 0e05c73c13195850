"""`dsedge run --device`: the release flashed on the device generates through its runtime; the
prompt is tokenized and the tokens decoded on the host, so they equal the host's own run of the
same graph."""
from __future__ import annotations

import dsedge
from dsedge.run import Runner

PROMPT = "Once upon a time"


def test_run_on_the_flashed_release_matches_the_host(sshd, artifacts, tmp_path):
    a, _ = artifacts
    kw = sshd.kwargs(tmp_path / "root")
    [res] = dsedge.flash(a, [sshd.address], runtime="onnxruntime", **kw)
    assert res.ok, res.error
    r = Runner(a)
    ids = r.encode(PROMPT)
    dev = r.generate_on_device(ids, 16, sshd.address, runtime="onnxruntime", **kw)
    # the device's onnxruntime runs model.onnx: the host's run of the same graph gives the same tokens
    host = Runner(a, graph="standard").generate(ids, 16)
    assert dev.tokens == host.tokens and dev.text == host.text and dev.stopped == host.stopped
    assert dev.runtime == "onnxruntime" and "release" in dev.where


def test_run_on_a_device_without_the_release(sshd, artifacts, tmp_path):
    import pytest

    from dsedge.errors import UsageError

    a, _ = artifacts
    with pytest.raises(UsageError, match="is not on the device"):
        Runner(a).generate_on_device([0, 5], 4, sshd.address, **sshd.kwargs(tmp_path / "empty-root"))
