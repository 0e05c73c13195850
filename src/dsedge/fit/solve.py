"""The choice of a fit: one option per unit, least summed loss, summed bytes within a budget.

A multiple-choice knapsack, solved exactly by dynamic programming over the bytes above each
unit's cheapest option, counted in steps of budget/STEPS bytes rounded up: the choice never
exceeds the budget, and is optimal among choices whose rounded bytes fit (a choice that fits
only unrounded can be missed: at most one step per unit, 1/STEPS of the room each). numpy only.
"""
from __future__ import annotations

import math

import numpy as np

STEPS = 4096


def choose(options: list[list[tuple[int, float]]], budget: int, steps: int = STEPS) -> list[int] | None:
    """options[i]: (bytes, loss) of unit i's choices. -> the index of each unit's choice, or None
    when even the cheapest choice of every unit exceeds the budget. Equal losses: fewer bytes."""
    base = [min(b for b, _ in o) for o in options]
    room = budget - sum(base)
    if room < 0:
        return None
    step = max(1, math.ceil(room / steps))
    cap = room // step
    cost = [[math.ceil((b - base[i]) / step) for b, _ in o] for i, o in enumerate(options)]
    best = np.full(cap + 1, np.inf)                       # best[c]: least loss using exactly c steps
    best[0] = 0.0
    pick = np.zeros((len(options), cap + 1), dtype=np.int16)
    for i, o in enumerate(options):
        new = np.full(cap + 1, np.inf)
        for j, (_, loss) in enumerate(o):
            c = cost[i][j]
            if c > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[c:] = best[:cap + 1 - c] + loss
            better = cand < new
            new[better], pick[i, better] = cand[better], j
        best = new
    c = int(np.argmin(best))                               # first minimum: the fewest steps
    out = [0] * len(options)
    for i in range(len(options) - 1, -1, -1):
        j = int(pick[i, c])
        out[i], c = j, c - cost[i][j]
    return out
