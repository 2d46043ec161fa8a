"""The deployment verbs of the `zoo` command; zoo.cli calls `add_commands(add)` once.

  zoo export NAME_OR_RUN --format onnx|pt2|torchscript [--opset N] [--no-dynamic-batch] --out DIR
"""

from __future__ import annotations

import json


def cmd_export(a) -> int:
    from .export import export

    out = export(a.name, a.format, a.out, opset=a.opset, dynamic_batch=a.dynamic_batch)
    card = json.loads((out / "deploy.json").read_text())
    par = card["parity"]
    print(f"{out / card['file']['name']}  ({card['file']['size']:,} bytes)")
    print(f"parity with PyTorch ({par['runtime']}, batch sizes {par['batch_sizes']}): "
          f"max abs diff {par['max_abs_diff']:.3g} <= {par['tolerance']:g}")
    for note in card["notes"]:
        print(f"note: {note}")
    return 0


def add_commands(add) -> None:
    """Register the deployment verbs with zoo.cli's `add(name, fn, help)` (which returns the subparser)."""
    from .export import DEFAULT_OPSET, FORMATS

    sp = add("export", cmd_export, "export a model to ONNX, torch.export (.pt2) or TorchScript, checked against "
             "PyTorch, with a card (deploy.json, README.md)")
    sp.add_argument("name", help="tag, family name, weights folder or run dir")
    sp.add_argument("--format", required=True, choices=FORMATS)
    sp.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    sp.add_argument("--dynamic-batch", action="store_true", default=True,
                    help="keep the batch axis symbolic (the default)")
    sp.add_argument("--no-dynamic-batch", dest="dynamic_batch", action="store_false",
                    help="fix every shape at batch size 2")
    sp.add_argument("--out", required=True, help="folder to write (created)")
