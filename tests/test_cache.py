"""dsedge.cache: reference logits are kept (and stored) only up to their byte limit."""
import numpy as np

from dsedge.cache import CachedLogits, StageCache


def test_reference_logits_beyond_the_limit_are_not_held(tmp_path):
    calls = []

    def fn(ids):
        calls.append(ids.shape)
        return np.zeros((*ids.shape, 1000), np.float32)           # 4 kB per position

    small = CachedLogits(fn, StageCache(root=tmp_path / "a"), "k", max_bytes=10**6)
    ids = np.zeros((2, 8), np.int64)
    small(ids), small(ids)
    assert len(calls) == 1 and small.table and not small.overflow   # 64 kB: kept, computed once
    big = CachedLogits(fn, StageCache(root=tmp_path / "b"), "k", max_bytes=100_000)
    for i in range(3):
        big(np.full((2, 8), i, np.int64))
    assert big.overflow and big.table == {}                          # 192 kB > 100 kB: nothing held
    big.save(tmp_path)
    assert StageCache(root=tmp_path / "b").get("reference_logits", "k") is None
