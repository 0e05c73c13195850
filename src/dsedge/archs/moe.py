"""Calibration hooks of mixture-of-experts families, driven by their MoeSpec: a probe that counts
(and, when training, keeps) what the routers choose, and the AWQ router compensation. Used by the
llm-compressor backend and by the reference trainer; torch is imported by the caller's model."""
from __future__ import annotations

from .base import ArchSpec


class RouterProbe:
    """Forward hooks on every MoE router (a module with `top_k` and `num_experts`): keeps each
    call's router logits for the load-balancing loss (while gradients are on), and counts tokens
    per expert."""

    def __init__(self, model):
        import torch

        self.logits: list = []                    # (router logits (S, E), top_k) per call
        self.counts: dict = {}                    # router module name -> tokens per expert (E,)
        self.handles = []
        for name, mod in model.named_modules():
            if (hasattr(mod, "top_k") and hasattr(mod, "num_experts")
                    and isinstance(getattr(mod, "weight", None), torch.nn.Parameter)):
                self.counts[name] = torch.zeros(mod.num_experts, dtype=torch.long)
                self.handles.append(mod.register_forward_hook(self._hook(name, mod.num_experts, mod.top_k)))

    def _hook(self, name, n_experts, top_k):
        import torch

        def hook(mod, args, out):
            logits, _, idx = out                                   # (S, E), (S, K), (S, K)
            if torch.is_grad_enabled():
                self.logits.append((logits, top_k))
            self.counts[name] += torch.bincount(idx.reshape(-1).cpu(), minlength=n_experts)
        return hook

    def aux_loss(self):
        """Switch-style balance loss, mean over routers: E * sum_e f_e * p_e (1 when balanced)."""
        import torch

        losses = []
        for logits, top_k in self.logits:
            e = logits.shape[-1]
            probs = logits.float().softmax(-1)                     # (S, E)
            top = probs.topk(top_k, dim=-1).indices                # (S, K)
            f = torch.zeros(e).scatter_add_(0, top.reshape(-1), torch.ones(top.numel())) / top.numel()
            losses.append(e * (f * probs.mean(0)).sum())           # f: no gradient, p: gradient
        self.logits.clear()
        return torch.stack(losses).mean() if losses else torch.zeros(())

    def load(self) -> dict:
        """Per router: tokens routed to each expert and the share of the busiest one."""
        return {n: {"tokens": c.tolist(), "max_share": round(float(c.max() / c.sum().clamp(min=1)), 4)}
                for n, c in self.counts.items()}

    def reset(self):
        self.logits.clear()
        for c in self.counts.values():
            c.zero_()

    def remove(self):
        for h in self.handles:
            h.remove()


def expert_tokens(model, input_ids) -> dict[str, list[int]]:
    """Tokens the (float) routers send to each expert over `input_ids` (N, T), one sample at a
    time: router module name -> tokens per expert."""
    import torch

    probe = RouterProbe(model)
    try:
        with torch.no_grad():   # no grad: the probe keeps no logits for a balance loss
            for row in input_ids.long():
                model(input_ids=row[None])
    finally:
        probe.remove()
    return {k: v.tolist() for k, v in probe.counts.items()}


def routers_behind_norms(spec: ArchSpec, model) -> list:
    """(norm, router, norm weight now) for every MoE block whose router reads `spec.moe.router_norm`'s
    output. Empty for dense families."""
    if spec.moe is None:
        return []
    out = []
    for layer in model.get_submodule(spec.layers_prefix):
        try:
            router, norm = layer.get_submodule(spec.moe.router), layer.get_submodule(spec.moe.router_norm)
        except AttributeError:   # a dense layer: no router
            continue
        if hasattr(router, "top_k"):
            out.append((norm, router, norm.weight.detach().clone()))
    return out


def compensate_routers(routers) -> None:
    """AWQ divides the router's norm by its scales s and multiplies the experts' gate / up inputs
    by s. llm-compressor 0.14's mapping leaves the router out (it is not a Linear), so the router
    would read x / s: measured on the tiny reference, the top-2 choice then changed for 5-15 % of
    calibration tokens. Written by hand because no library does it: the router's input columns are
    multiplied by old_norm / new_norm (= s), which keeps its logits."""
    import torch

    with torch.no_grad():
        for norm, router, old in routers:
            new = norm.weight.detach()
            ratio = torch.where(new != 0, old / new, torch.ones_like(new))   # (H,)
            router.weight.mul_(ratio.to(router.weight.dtype)[None, :])        # (E, H)
