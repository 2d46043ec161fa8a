"""Optimisers, LR schedules and an EMA of weights, built from a recipe's optim/schedule sections."""

from __future__ import annotations

import copy
import math

import torch


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    # no weight decay on norms and biases (1-D parameters), as timm and most recipes do
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    name = cfg["name"].lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    raise ValueError(f"optim.name: unknown optimiser {cfg['name']!r}; choose adamw, adam or sgd")


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict, total_steps: int, steps_per_epoch: int):
    """A LambdaLR stepped once per optimiser step: constant | cosine | onecycle | step, with linear warm-up."""
    name = cfg["name"].lower()
    warmup = cfg["warmup_steps"] or int(round(cfg["warmup_epochs"] * steps_per_epoch))
    floor = cfg["min_lr_ratio"]
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if name == "onecycle":
            peak = max(1, int(cfg["pct_start"] * total))
            if step < peak:
                return 0.04 + 0.96 * step / peak
            t = min(1.0, (step - peak) / max(1, total - peak))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        if name == "cosine":
            t = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if name == "step":
            return cfg["gamma"] ** int(step / max(1, cfg["step_size"] * steps_per_epoch))
        raise ValueError(f"schedule.name: unknown schedule {cfg['name']!r}; choose constant, cosine, onecycle, step")

    factor(0)  # fail early on a bad name
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EMA:
    """Exponential moving average of a model's parameters and buffers, kept on the same device."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.lerp_(m.detach(), 1 - self.decay)
            else:
                e.copy_(m)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state):
        self.module.load_state_dict(state)
