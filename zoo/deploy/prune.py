"""Structured channel pruning with torch-pruning, then a recovery fine-tune through the engine's own loop.

    zoo prune cnn.fashion_mnist --amount 0.5 --minutes 5 --out cnn.fashion_mnist-pruned

torch-pruning builds the dependency graph (residual additions tie channels across layers) and removes the
channels of lowest L2 magnitude until `amount` of the prunable channels are gone; the classifier's outputs
are kept. The pruned network is then trained for `minutes` with the weights' own recipe (its data,
augmentation and optimiser; learning rate scaled by `lr_scale`), evaluated on the card's data, and
exported to ONNX: its channel counts no longer follow the family's constructor arguments, so the deployable
file is the result. The folder loads like a weights folder (zoo.create, zoo eval, zoo predict: see
zoo.deploy.folder); prune.json gives FLOPs and parameters before and after, the metric, and the speed-up.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..utils import write_json
from .exporter import export, load_model, source_info
from .folder import write_folder
from .graphs import graph_spec
from .runtime import need


def flops_and_params(model: nn.Module, inputs: tuple) -> tuple[int, int]:
    """(multiply-accumulates x 2, parameters) of one forward pass, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # the counter's module tracker hooks every module input that requires grad, and on a pruned bev one of them
    # has no grad function ("Expected gradient function to be set"): with no parameter requiring grad, none does
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    return counter.get_total_flops(), sum(p.numel() for p in params)


# Per-family part of the model that is pruned (measured): bev's attention reshapes are beyond torch-pruning's
# dependency graph (an IndexError inside its importance), its image encoder (conv backbone + FPN) prunes cleanly.
FAMILY_SCOPE = {"bev": "encoder"}
PRUNABLE = (nn.Linear, nn.Conv2d, nn.Conv3d)


class NotPrunable(ValueError):
    """The model has nothing torch-pruning can remove channels from (or its graph defeats torch-pruning)."""


def scope_of(model: nn.Module, scope: str | None = None) -> str | None:
    """The submodule to prune: `scope` if given, else the family's FAMILY_SCOPE, else None (the whole model)."""
    return scope or FAMILY_SCOPE.get((getattr(model, "pretrained_cfg", None) or {}).get("family"))


def prune_channels(model: nn.Module, amount: float, inputs: tuple, scope: str | None = None) -> nn.Module:
    """A copy of `model` with `amount` of its channels removed (L2 magnitude, torch-pruning's dependency graph).

    `scope` (default: the family's FAMILY_SCOPE, else the whole model): prune only the layers of that submodule;
    its last layer keeps its outputs, which the rest of the model reads."""
    if not 0 < amount < 1:
        raise ValueError(f"prune amount must be in (0, 1), got {amount}")
    tp = need("torch_pruning")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("arch") or type(model).__name__
    scope = scope_of(model, scope)
    model = copy.deepcopy(model).eval()
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise NotPrunable(f"{arch}: nothing for torch-pruning to prune (no Linear/Conv module)")
    inside = [name for name, _ in layers if scope is None or f".{scope}." in f".{name}."]
    if not inside:
        raise ValueError(f"prune scope {scope!r}: {arch} has no Conv/Linear layer inside a module of that name")
    heads = getattr(model, "classifier", None) or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    # the outputs are the model's contract (classes, actions): its head, else its last layer, keeps them all;
    # with a scope, every layer outside it and the scope's own last layer (the rest of the model reads it)
    keep = [m for name, m in layers if any(name == h or name.startswith(h + ".") for h in heads)] or [layers[-1][1]]
    if scope is not None:
        keep += [m for name, m in layers if name not in inside] + [dict(layers)[inside[-1]]]
    pruner = tp.pruner.MetaPruner(model, inputs, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=amount, ignored_layers=keep, global_pruning=False)
    try:
        pruner.step()
    except (IndexError, RuntimeError, KeyError) as e:  # torch-pruning's graph did not match the model's ops
        raise NotPrunable(f"{arch}: torch-pruning could not follow its channel dependencies ({type(e).__name__}: "
                          f"{e}); prune a convolutional part of it instead (scope)") from e
    return model


def prune(name: str, amount: float = 0.5, *, minutes: float = 5.0, out_dir: str | os.PathLike | None = None,
          lr_scale: float = 0.25, overrides=(), scope: str | None = None) -> Path:
    """Prune `name`'s channels, fine-tune for `minutes`, export to ONNX with a card; returns the folder.

    `scope`: the submodule whose layers are pruned (default: the family's FAMILY_SCOPE, else the whole model)."""
    from .. import recipes as R
    from ..engine.run import load_for_eval, make_context, resolve_recipe
    from .quantize import throughput

    model = load_model(name)
    src = source_info(model)
    spec = graph_spec(model)
    x = spec.example_inputs(64)
    before = flops_and_params(model, x)
    scope = scope_of(model, scope)
    pruned = prune_channels(model, amount, spec.example_inputs(2), scope=scope)
    after = flops_and_params(pruned, x)
    _, raw = load_for_eval(name)
    lr = raw.get("optim", {}).get("lr", 0.01) * lr_scale
    # the recovery is a time budget: epoch-based recipes run until it (tasks without epochs, rl's env steps,
    # refuse the key), and the schedule anneals by its deadline instead of over the recipe's own steps (a
    # step-defined recipe, cut by the deadline, would stop at its peak learning rate: 0.9308 vs 0.9436 on cnn)
    train = raw.get("train", {})
    budget = [*(["train.epochs=1000"] if "epochs" in train else []),
              *(["train.max_steps=null"] if "max_steps" in train else []),
              *(["schedule.progress=time"] if isinstance(raw.get("schedule"), dict) else [])]
    raw = R.apply_overrides(raw, [f"train.max_minutes={minutes}", f"optim.lr={lr}", *budget,
                                  "~expect", "~weights", *overrides])
    recipe, task = resolve_recipe(raw)
    out = Path(out_dir or f"{src['tag'] or src['arch']}-pruned")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(recipe, task, run_dir=Path(tmp), device=None, resume=False)
        data = task.build_data(recipe["data"], ctx)
        pruned.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}))
        fit = task.fit(pruned, data, ctx) or {}
        pruned.cpu().eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in task.evaluate(pruned, data.test if data.test is not None else data.val,
                                                                   ctx).items()}
    export(pruned, "onnx", out)
    with torch.no_grad():
        speed = {"dense": throughput(model, x), "pruned": throughput(pruned, x)}
    card = {"source": src, "tag": f"{src['tag'] or src['arch']}-pruned", "amount": amount, "scope": scope,
            "flops": {"dense": before[0], "pruned": after[0], "removed": 1 - after[0] / before[0]},
            "params": {"dense": before[1], "pruned": after[1]}, "metrics": metrics,
            "recovery": {"minutes": minutes, "lr": lr, "train_seconds": fit.get("train_seconds")},
            "rows_per_second_eager": speed, "speedup_eager": speed["pruned"] / speed["dense"],
            "speed_setting": {"batch": 64, "threads": torch.get_num_threads()}}
    write_json(out / "prune.json", card)
    deploy = {"kind": "pruned", "amount": amount, "scope": scope, "flops": card["flops"], "params": card["params"],
              "recovery": card["recovery"]}
    where = f" (in `{scope}`)" if scope else ""
    readme = (f"# {card['tag']}\n\n{amount:.0%} of the channels{where} of `{src['tag']}` removed (torch-pruning, L2), "
              f"then {minutes:g} minutes of recovery: FLOPs {before[0]:,} -> {after[0]:,} "
              f"({card['flops']['removed']:.1%} removed) per batch of 64, eager speed-up "
              f"{card['speedup_eager']:.2f}x.\n\n" + "".join(f"- {k}: {v:.4f}\n" for k, v in metrics.items())
              + "\n" + (out / "README.md").read_text())
    return write_folder(out, model, deploy, metrics, readme)
