"""`--fit`: per-unit precision fitted to a target's memory (issue 20, part 2).

    units.py        what can be fitted (every decoder linear, lm_head, the embedding table), the
                    storage choices of each and their bytes (pure arithmetic, no torch)
    budget.py       the bytes the fitted units may take: the target's usable memory at a context
                    minus the KV cache, workspace, runtime and the weights that are not fitted
    sensitivity.py  each unit's measured cost: KL of the logits with that unit alone at INT4 or
                    INT8 (everything else FP16), on calibration windows (torch)
    solve.py        the choice: least summed KL within the budget (a knapsack, exact at its step)

The build's fit stage (stages/fit.py) runs them in that order and hands the quantize stage a
fitted quantize.MixedPrecisionConfig; `dsedge plan --fit` runs units + budget from config.json.
"""
