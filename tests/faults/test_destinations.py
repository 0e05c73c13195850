"""Never delete or replace what dsedge did not create: -o is locked for the build, checked again
when the artifact is renamed into place, never an input of the build, and --overwrite replaces
only a folder holding a dsedge manifest."""
from __future__ import annotations

import shutil
import time

import pytest

from dsedge import reference

from .conftest import dsedge, refused, start, tree


def test_o_is_never_the_checkpoint_nor_holds_the_eval_text(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(reference.checkpoint_path(), ckpt)
    before = tree(ckpt)
    refused(dsedge("build", "--model", ckpt, "-o", ckpt, "--overwrite"), "is or contains", "an input of this build")
    data = tmp_path / "data"
    data.mkdir()
    (data / "eval.txt").write_text("the cat sat on the mat\n" * 200)
    refused(dsedge("build", "--model", ckpt, "--eval", data / "eval.txt", "-o", data, "--overwrite"), "is or contains")
    refused(dsedge("build", "--model", ckpt, "-o", tmp_path), "is or contains")
    assert tree(ckpt) == before and (data / "eval.txt").is_file()


def test_overwrite_replaces_only_a_dsedge_artifact(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "cat.jpg").write_bytes(b"\xff\xd8 not an artifact")
    refused(dsedge("build", "-o", mine, "--overwrite"), "is not a dsedge artifact (no manifest.json)")
    assert (mine / "cat.jpg").read_bytes() == b"\xff\xd8 not an artifact"
    refused(dsedge("build", "-o", tmp_path / ("x" * 250)), "pass -o with a name of at most 200 bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.slow
def test_a_second_build_into_the_same_o_is_refused_and_a_folder_made_meanwhile_is_kept(tmp_path, cache):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "art"
    first = start("build", "--bits", "4", "--no-latency", "-o", out, cache=cache)
    deadline = time.time() + 180
    while not list(work.glob(".art.partial-*")):
        assert first.poll() is None, first.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    second = dsedge("build", "--bits", "8", "-o", out, "--overwrite", cache=cache)
    refused(second, f"is being written by process {first.pid}")
    out.mkdir()                                     # a user makes the folder while the first still runs
    (out / "notes.txt").write_text("mine")
    _, err = first.communicate(timeout=900)
    assert first.returncode == 2 and "appeared during the build" in err and "Traceback" not in err, err[-3000:]
    assert tree(out) == {"notes.txt": tree(out)["notes.txt"]} and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in work.iterdir()) == ["art"], list(work.iterdir())   # no partial, no lock left
