import numpy as np
import pytest

from dsedge.check.accuracy import EvalData, evaluate, load_eval, task_accuracy
from dsedge.errors import UsageError

V = 16


def _data(n=4, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return EvalData(rng.integers(0, V, (n, w)), [], "gen", "0" * 64, w)


def uniform(ids):
    return np.zeros((*ids.shape, V), np.float32)


def oracle(ids):
    """Puts almost all mass on the true next token (known from the ids themselves)."""
    out = np.full((*ids.shape, V), -20.0, np.float32)
    nxt = np.concatenate([ids[:, 1:], ids[:, :1]], axis=1)
    np.put_along_axis(out, nxt[..., None], 20.0, -1)
    return out


def test_uniform_model_has_perplexity_vocab_size():
    m = evaluate({"u": uniform}, _data())["u"]
    assert m.perplexity == pytest.approx(V, rel=1e-9)


def test_kl_and_top1_against_reference():
    res = evaluate({"ref": oracle, "same": oracle, "u": uniform}, _data(), reference="ref")
    assert res["ref"].kl == 0 and res["same"].kl == pytest.approx(0, abs=1e-12)
    assert res["same"].top1_agreement == 1.0
    # KL(onehot-ish || uniform) = log V - H(ref) ~ log V
    assert res["u"].kl == pytest.approx(np.log(V), rel=1e-3)
    assert res["ref"].perplexity == pytest.approx(1.0, abs=1e-6)
    assert len(res["u"].kl_per_token) == 4 * 31
    assert "kl_quantiles" in res["u"].to_dict()


def test_task_accuracy_exact_match():
    task = [([1, 2, 3], [4]), ([5, 6], [7, 8])]
    def knows_first(ids):
        out = np.zeros((*ids.shape, V), np.float32)
        out[0, -1, 4] = 1  # predicts 4 after [1, 2, 3]
        return out
    assert task_accuracy(knows_first, task[:1]) == 1.0
    assert task_accuracy(knows_first, task) == 0.5


class _WordTok:
    """A whitespace tokenizer for load_eval's contract (callable returning input_ids)."""
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [hash(w) % V for w in text.split()]}


def test_load_eval_windows_and_hash(tmp_path):
    f = tmp_path / "e.txt"
    f.write_text(" ".join(["a b c d"] * 100))
    d = load_eval(_WordTok(), f, window=64)
    assert d.windows.shape == (6, 64) and len(d.sha256) == 64
    f.write_text(" ".join(["a b c d"] * 101))
    assert load_eval(_WordTok(), f, window=64).sha256 != d.sha256


@pytest.mark.parametrize("text,match", [("", "is empty"), ("   \n", "is empty"), ("a b", "fewer than one 64-token")])
def test_load_eval_rejects_unusable_text(tmp_path, text, match):
    f = tmp_path / "e.txt"
    f.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_eval(_WordTok(), f, window=64)


def test_kl_distribution_is_kept_as_quantiles_and_a_log_histogram():
    res = evaluate({"ref": oracle, "u": uniform, "near": lambda ids: oracle(ids) * 0.5}, _data(n=6), reference="ref")
    for name in ("u", "near"):
        d = res[name].to_dict()
        kl = np.asarray(res[name].kl_per_token)
        h, q = d["kl_histogram"], d["kl_quantiles"]
        assert h["n"] == kl.size == 6 * 31
        assert sum(h["counts"]) + h["below"] + h["above"] == h["n"]
        edges = np.asarray(h["edges"])
        assert len(edges) == len(h["counts"]) + 1 and np.allclose(np.diff(np.log10(edges)), 0.25)
        # each token lands in the bin holding its value
        i = np.searchsorted(edges, kl, side="right") - 1
        inside = (kl >= edges[0]) & (kl < edges[-1])
        assert np.array_equal(np.bincount(i[inside], minlength=len(h["counts"])), h["counts"])
        vals = [q[k] for k in ("p50", "p90", "p99", "p99.9", "max")]
        assert vals == sorted(vals) and q["max"] == pytest.approx(kl.max())
    assert res["u"].to_dict()["kl_quantiles"]["p50"] > res["near"].to_dict()["kl_quantiles"]["p50"]
    assert "kl_histogram" not in res["ref"].to_dict()  # the reference has no per-token KL against itself


def test_chunked_float64_arithmetic_equals_the_whole_batch_computation(monkeypatch):
    """The per-position chunks (a few rows at a time here) give the figures of one float64
    computation over all positions at once."""
    import dsedge.check.accuracy as acc

    rng = np.random.default_rng(1)
    data = _data(n=6, w=24)
    table = {"ref": rng.normal(size=(6, 24, V)).astype(np.float32)}
    table["q"] = table["ref"] + rng.normal(scale=0.1, size=table["ref"].shape).astype(np.float32)
    fns = {k: (lambda ids, k=k: table[k][:len(ids)] if len(ids) == 6 else
               table[k][np.flatnonzero((data.windows[:, None] == ids[None]).all(-1).any(-1))]) for k in table}
    monkeypatch.setattr(acc, "CHUNK_BYTES", 8 * V * 5)              # 5 positions per chunk
    got = evaluate(fns, data, reference="ref", batch=4)
    lp = {k: v[:, :-1].astype(np.float64) - np.log(np.exp(v[:, :-1].astype(np.float64)).sum(-1, keepdims=True))
          for k, v in table.items()}
    tg = data.windows[:, 1:]
    kl = (np.exp(lp["ref"]) * (lp["ref"] - lp["q"])).sum(-1)
    assert got["q"].kl == pytest.approx(kl.mean(), rel=1e-9)
    assert got["q"].perplexity == pytest.approx(np.exp(-np.take_along_axis(lp["q"], tg[..., None], -1).mean()), rel=1e-9)
    assert got["q"].top1_agreement == pytest.approx((lp["q"].argmax(-1) == lp["ref"].argmax(-1)).mean())


def test_eval_batch_shrinks_with_the_vocabulary():
    from dsedge.check.accuracy import BATCH_LOGIT_BYTES, eval_batch

    assert eval_batch(32, 128, 256) == 8
    assert eval_batch(32, 128, 151936) * 128 * 151936 * 4 <= BATCH_LOGIT_BYTES
    assert eval_batch(32, 4096, 151936) == 1 and eval_batch(3, 128, 256) == 3


def test_chat_separator_renders_each_line_as_an_r1_user_turn(tmp_path):
    """--chat-template: each eval line becomes BOS <｜User｜>line<｜Assistant｜><think>\\n, as DeepSeek-R1's
    template renders a prompt; a tokenizer without a chat template is a usage error naming the fix."""
    from dsedge import reference
    from dsedge.check.accuracy import tokenize_lines
    from dsedge.load import open_checkpoint
    from dsedge.reference.synthetic import R1_CHAT_TEMPLATE

    tok = open_checkpoint(reference.checkpoint_path("qwen2-tiny")).tokenizer()
    with pytest.raises(UsageError, match="no chat template") as e:
        tokenize_lines(tok, "the cat\n", "chat")
    assert "--chat-template" in e.value.fix
    tok.chat_template = R1_CHAT_TEMPLATE
    ids = tokenize_lines(tok, "the cat\n\nsat down\n", "chat")
    turns = [tok.apply_chat_template([{"role": "user", "content": x}], tokenize=False, add_generation_prompt=True)
             for x in ("the cat", "sat down")]
    assert turns[0].startswith(tok.bos_token + "<｜User｜>the cat<｜Assistant｜><think>")
    assert ids == sum((tok(t, add_special_tokens=False)["input_ids"] for t in turns), [])
    assert ids.count(tok.bos_token_id) == 2                 # one BOS per conversation, none doubled
