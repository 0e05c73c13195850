"""fit.solve.choose, the multiple-choice knapsack, against brute force over every combination on
small random instances (numpy seeds): exact where the budget's room is at most STEPS bytes (one
step is one byte), within the budget always, None when even the cheapest choices do not fit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from dsedge.fit.solve import STEPS, choose


def _instance(rng, units: int, integer_losses: bool = False):
    """options[i]: 1 to 3 (bytes, loss) choices, cheapest first, loss falling with bytes (as the
    fit's INT4 / INT8 / FP16), or any order of losses."""
    out = []
    for _ in range(units):
        k = int(rng.integers(1, 4))
        nbytes = np.sort(rng.choice(np.arange(10, 400), size=k, replace=False))
        if integer_losses:   # exact float sums: ties are real ties
            loss = rng.integers(0, 4, size=k).astype(float)
        else:
            loss = np.sort(rng.random(k))[::-1]
            loss[-1] = 0.0 if rng.random() < 0.5 else loss[-1]
        out.append([(int(b), float(x)) for b, x in zip(nbytes, loss)])
    return out


def _brute(options, budget):
    """-> (least loss, fewest bytes at that loss) over every combination within budget, or None."""
    best = None
    for combo in itertools.product(*[range(len(o)) for o in options]):
        b = sum(options[i][j][0] for i, j in enumerate(combo))
        if b > budget:
            continue
        loss = sum(options[i][j][1] for i, j in enumerate(combo))
        if best is None or loss < best[0] - 1e-12 or (abs(loss - best[0]) <= 1e-12 and b < best[1]):
            best = (loss, b)
    return best


def _totals(options, pick):
    return (sum(options[i][j][1] for i, j in enumerate(pick)), sum(options[i][j][0] for i, j in enumerate(pick)))


def _budget(rng, options):
    lo = sum(o[0][0] for o in options)
    hi = sum(o[-1][0] for o in options)
    return int(rng.integers(lo, hi + 1))


@pytest.mark.parametrize("seed", range(40))
def test_equals_brute_force_when_a_step_is_one_byte(seed):
    rng = np.random.default_rng(seed)
    options = _instance(rng, int(rng.integers(1, 8)))
    budget = _budget(rng, options)
    assert budget - sum(o[0][0] for o in options) <= STEPS     # so choose's step is 1 byte: exact
    pick = choose(options, budget)
    assert pick is not None and len(pick) == len(options)
    assert all(0 <= j < len(o) for j, o in zip(pick, options))
    loss, nbytes = _totals(options, pick)
    want = _brute(options, budget)
    assert nbytes <= budget
    assert loss == pytest.approx(want[0], abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_ties_prefer_fewer_bytes(seed):
    """Integer losses (exact sums, many ties): among the least-loss choices, the fewest bytes."""
    rng = np.random.default_rng(1000 + seed)
    options = _instance(rng, int(rng.integers(2, 8)), integer_losses=True)
    budget = _budget(rng, options)
    pick = choose(options, budget)
    loss, nbytes = _totals(options, pick)
    assert (loss, nbytes) == _brute(options, budget)


def test_equal_losses_take_the_cheapest_choice():
    # nothing to gain from more bytes: every unit stays at its cheapest, though FP16 fits
    options = [[(10, 1.0), (20, 1.0), (40, 1.0)], [(5, 0.0), (9, 0.0)]]
    assert choose(options, 1000) == [0, 0]
    # the second unit's upgrade is worth it, the first's is not
    options = [[(10, 1.0), (20, 1.0)], [(5, 2.0), (9, 0.5)]]
    assert choose(options, 1000) == [0, 1]


@pytest.mark.parametrize("seed", range(20))
def test_coarse_steps_never_exceed_the_budget_and_lose_at_most_one_step_per_unit(seed):
    """A room of many steps (step > 1 byte): the choice stays within the budget, and is at least
    as good as the exact optimum within the budget less one step per unit (the rounding's bound)."""
    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(2, 7))
    options = []
    for _ in range(n):
        k = int(rng.integers(2, 4))
        nbytes = np.sort(rng.choice(np.arange(1000, 200_000), size=k, replace=False))
        loss = np.sort(rng.random(k))[::-1]
        options.append([(int(b), float(x)) for b, x in zip(nbytes, loss)])
    cheapest = sum(o[0][0] for o in options)
    steps = 64
    budget = max(_budget(rng, options), cheapest + 4 * n * 4000)   # room for n steps and more
    step = -(-(budget - cheapest) // steps)
    assert step > 1
    pick = choose(options, budget, steps=steps)
    loss, nbytes = _totals(options, pick)
    assert nbytes <= budget
    assert loss <= _brute(options, budget - n * step)[0] + 1e-12
    assert loss >= _brute(options, budget)[0] - 1e-12


def test_a_budget_below_the_cheapest_choices_is_none():
    rng = np.random.default_rng(7)
    for _ in range(20):
        options = _instance(rng, int(rng.integers(1, 8)))
        cheapest = sum(o[0][0] for o in options)
        assert choose(options, cheapest - 1) is None
        assert choose(options, cheapest) == [0] * len(options)   # exactly the cheapest: all cheapest


def test_the_full_budget_takes_the_least_loss_of_every_unit():
    rng = np.random.default_rng(11)
    options = _instance(rng, 6)
    pick = choose(options, sum(o[-1][0] for o in options))
    for j, o in zip(pick, options):
        assert o[j][1] == min(x for _, x in o)
