"""Strict configuration and bounded inputs: a misspelled dsedge.yaml section, YAML aliases, files
over their size limits are exit-2 errors naming the file, the key and the fix."""
from __future__ import annotations

import pytest

from .conftest import dsedge, refused


@pytest.mark.parametrize("text,words", [
    ("gates:\n  max_kl: 0.1\n", ["unknown section 'gates'", "did you mean 'gate'?"]),
    ("budget:\n  ttft_ms: 400\n", ["unknown section 'budget'", "did you mean 'budgets'?"]),
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b]\n",
     ["YAML alias *a (line 2) is not accepted"]),
])
def test_project_file_is_strict(tmp_path, text, words):
    (tmp_path / "dsedge.yaml").write_text(text)
    refused(dsedge("build", "-o", tmp_path / "art", cwd=tmp_path), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsedge.yaml"]


def test_files_over_their_size_limit_are_refused(tmp_path):
    with open(tmp_path / "dsedge.yaml", "w") as f:
        f.write("gate:\n" + "".join(f"  # {i:08d} padding\n" for i in range(60_000)))
    refused(dsedge("build", "-o", tmp_path / "art", cwd=tmp_path), "over the 1,048,576-byte limit")
    (tmp_path / "dsedge.yaml").unlink()
    huge = tmp_path / "eval.txt"
    with open(huge, "wb") as f:     # sparse: 300 MiB on paper, nothing on disk
        f.truncate(300 << 20)
    refused(dsedge("build", "--eval", huge, "-o", tmp_path / "art"), "300 MiB, over the 256 MiB limit")
    assert not (tmp_path / "art").exists()


def test_a_single_line_eval_file_reads_only_what_it_uses(tmp_path):
    """40 MB on one line: tokenized piece by piece until the 32 x 128 tokens are there."""
    from dsedge import reference
    from dsedge.check.accuracy import load_eval
    from dsedge.load import open_checkpoint

    f = tmp_path / "one-line.txt"
    f.write_text("the cat sat on the mat " * 1_800_000)
    tok = open_checkpoint(reference.checkpoint_path()).tokenizer()
    d = load_eval(tok, f)
    assert d.windows.shape == (32, 128)
    assert (d.windows[:, 1:] != tok.eos_token_id).all()   # no line ends invented inside the line


def test_a_calibration_file_over_its_limit_is_refused(tmp_path):
    from dsedge.calib.recipes import resolve_calibration
    from dsedge.errors import UsageError

    huge = tmp_path / "calib.txt"
    with open(huge, "wb") as f:
        f.truncate(300 << 20)
    with pytest.raises(UsageError, match="300 MiB, over the 256 MiB limit"):
        resolve_calibration(str(huge), tokenizer=None)


@pytest.mark.parametrize("text,words", [("[1, 2]", "does not hold a JSON object"),
                                        ('{"model": 3, "onnx": [1]}', "is malformed")])
def test_dsedge_report_on_a_malformed_report_json(tmp_path, text, words):
    """A report.json with no manifest to check it against, and fields of the wrong shape: exit 2."""
    (tmp_path / "report.json").write_text(text)
    refused(dsedge("report", tmp_path), words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
