"""The generated corpus is deterministic, consistent, and the shipped data files match it."""
import json

import pytest

from dsedge import reference
from dsedge.reference import corpus


def test_same_seed_same_text():
    assert corpus.generate("train", 300, seed=3) == corpus.generate("train", 300, seed=3)
    assert corpus.task_examples(50, seed=1) == corpus.task_examples(50, seed=1)


def test_splits_and_seeds_differ():
    texts = {(s, seed): corpus.generate(s, 200, seed) for s in corpus.SPLITS for seed in (0, 1)}
    assert len({tuple(t) for t in texts.values()}) == len(texts)


def test_unknown_split():
    with pytest.raises(ValueError):
        corpus.generate("test", 10, 0)


def test_vocabulary_covers_text():
    vocab = set(corpus.vocabulary())
    words = {w for line in corpus.generate("train", 5000, 0) for w in line.split()}
    assert words <= vocab
    assert all(w.isalpha() or w in ".?" for w in vocab)  # one token per word in both tokenizers


def test_facts_are_consistent():
    people = corpus.WORLD["person"]
    for line in corpus.generate("train", 5000, 0):
        w = line.split()
        if len(w) == 5 and w[1:3] == ["lives", "in"]:
            assert people[w[0]]["town"] == w[3]
        if w[:3] == ["the", "friend", "of"]:
            assert people[w[3]]["friend"] == w[5]


def test_arithmetic_is_exact():
    N = corpus.NUMBERS
    for ex in corpus.task_examples(200, seed=0):
        a, plus, b, eq = ex["prompt"].split()
        assert (plus, eq) == ("plus", "equals")
        assert N.index(a) + N.index(b) == N.index(ex["answer"])
    for line in corpus.generate("eval", 2000, 0):
        w = line.split()
        if len(w) == 6 and w[1] == "plus":
            assert N.index(w[0]) + N.index(w[2]) == N.index(w[4])


def test_shipped_data_matches_generator():
    files = corpus.data_files()
    paths = {"eval.txt": reference.eval_text_path(), "calib.txt": reference.calib_text_path(),
             "task.jsonl": reference.task_path()}
    for name, path in paths.items():
        assert path.read_text(encoding="utf-8") == files[name], f"{name} drifted; rerun corpus.py"
    assert 40_000 <= len(files["eval.txt"]) <= 80_000
    assert len([json.loads(l) for l in files["task.jsonl"].splitlines()]) == 200


def test_checkpoint_path_api():
    assert reference.DEFAULT_MODEL in reference.REFERENCE_MODELS
    assert reference.checkpoint_path() == reference.checkpoint_path(reference.DEFAULT_MODEL)
    with pytest.raises(KeyError, match="qwen2-tiny"):
        reference.checkpoint_path("gpt-huge")
