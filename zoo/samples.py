"""Sample inputs shipped inside published weights folders (`weights/<tag>/samples/`).

`zoo tour` and `zoo predict TAG` with no input read these, so a fresh install draws every family's
picture without any data set. They are a few real inputs in the format each community uses:

    classification         samples.csv (path,label rows) + the first two test images of each class (PNG)
    node_classification    graph.safetensors: a small subgraph of the test graph (x stored as uint8)
    volume_segmentation    t1_crop.nii.gz: a crop of the scan at the model's voxel spacing

Families that generate their input (bev scenes, dqn environments, nerf cameras, patchcore textures)
need none. Maintainers write them once per tag from the recipe's own evaluation data:

    ZOO_DATA=... python -m zoo.samples TAG [TAG ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLES = "samples"
PER_CLASS = 2            # test images of each class, the first ones in the test set's order
SUBGRAPH_NODES = {"Cora": 150, "CiteSeer": 80}  # x is dense uint8: nodes x features bytes
VOLUME_CROP = (64, 80, 64)  # voxels at the model's spacing (the centre of the scan)


def sample_dir(model) -> Path | None:
    """The `samples/` folder of the weights folder `model` was loaded from, or None."""
    source = (getattr(model, "pretrained_cfg", None) or {}).get("source")
    if not source or ":" in str(source).split("/")[0]:  # hf-hub:/local-dir: names carry no folder of their own
        return None
    folder = Path(source) / SAMPLES
    return folder if folder.is_dir() else None


# --------------------------------------------------------------------------- writers (maintainers)


def write_samples(tag: str) -> Path:
    """Write `weights/<tag>/samples/` from the recipe's evaluation data (needs that data: ZOO_DATA, ...)."""
    from zoo import registry, weights

    card = weights.get_card(tag)
    folder = Path(registry.create(tag, pretrained=True).pretrained_cfg["source"]) / SAMPLES
    folder.mkdir(exist_ok=True)
    writer = {"classification": _write_images, "node_classification": _write_subgraph,
              "volume_segmentation": _write_volume}.get(card["task"])
    if writer is None:
        raise ValueError(f"{tag}: task {card['task']!r} generates its own inputs; it ships no samples")
    source = writer(tag, card, folder)
    note = f"Written by `python -m zoo.samples {tag}`; read by `zoo predict` (no input) and `zoo tour`.\n"
    (folder / "README.md").write_text(f"# Sample inputs of {tag}\n\n{source}\n{note}")
    return folder


def _recipe_data(tag: str, task) -> dict:
    import yaml

    from zoo import registry

    source = Path(registry.create(tag, pretrained=True).pretrained_cfg["source"])
    data = yaml.safe_load((source / "recipe.yaml").read_text())["data"]
    return {**{k: f[1] for k, f in task.DATA_SCHEMA.items()}, **data}


def _write_images(tag: str, card: dict, folder: Path) -> str:
    from PIL import Image

    from zoo.families.cnn.task import load_sets
    from zoo.tasks import get_task

    train, val, test = load_sets(_recipe_data(tag, get_task("classification")))
    chosen = test if test is not None else val
    lines = ["path,label"]
    picks = [i for c in range(len(chosen.classes)) for i in (chosen.labels == c).nonzero().flatten()[:PER_CLASS]]
    for i in sorted(int(i) for i in picks):
        img = chosen.images[i].permute(1, 2, 0).numpy()
        name = f"test_{i:03d}.png"
        Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(folder / name)
        lines.append(f"{name},{chosen.classes[int(chosen.labels[i])]}")
    (folder / "samples.csv").write_text("\n".join(lines) + "\n")
    return (f"The first {PER_CLASS} test images of each class of the recipe's data set "
            f"({', '.join(card.get('datasets') or [card['input_spec'].get('dataset', 'see the card')])}), "
            "with their labels in samples.csv.\n")


def _write_subgraph(tag: str, card: dict, folder: Path) -> str:
    """The nodes nearest the first test node of each class (breadth first), with every edge among them."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import k_hop_subgraph, subgraph

    from zoo.families.gcn import data as G

    name = card["input_spec"]["dataset"]
    graph = G.planetoid(name)
    n = SUBGRAPH_NODES[name]
    test = graph.test_mask.nonzero().flatten()
    seed = torch.stack([test[graph.y[test] == c][0] for c in range(int(graph.y.max()) + 1)])
    hops = 1
    while True:
        nodes = k_hop_subgraph(seed, hops, graph.edge_index, num_nodes=graph.num_nodes)[0]
        if len(nodes) >= n or hops > 6:
            break
        hops += 1
    if len(nodes) > n:  # keep the seed's nearer rings whole, then the first nodes of the outer ring
        inner = k_hop_subgraph(seed, hops - 1, graph.edge_index, num_nodes=graph.num_nodes)[0]
        outer = nodes[~torch.isin(nodes, inner)]
        nodes = torch.cat((inner, outer[: n - len(inner)])).sort().values
    edge_index, _ = subgraph(nodes, graph.edge_index, relabel_nodes=True, num_nodes=graph.num_nodes)
    sample = Data(x=graph.x[nodes].round().to(torch.uint8), edge_index=edge_index, y=graph.y[nodes],
                  test_mask=graph.test_mask[nodes])
    if not torch.equal(graph.x[nodes], sample.x.float()):
        raise ValueError(f"{name}: features are not 0/1; they cannot be stored as uint8")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sample.to_dict().items()}, str(folder / "graph.safetensors"))
    return (f"graph.safetensors: {len(nodes)} nodes of Planetoid {name} around the first test node of each class "
            "(breadth first), every edge among them, the 0/1 bag-of-words features (uint8), labels and the test "
            "mask; load it with safetensors.torch.load_file(path) (a dict of tensors: Data(**d)) or "
            "`zoo predict TAG graph.safetensors`.\n")


def _write_volume(tag: str, card: dict, folder: Path) -> str:
    import numpy as np

    from zoo.families.unet3d import data as V

    if card.get("labels") != V.TISSUE_LABELS:
        raise ValueError(f"{tag}: only the MNI152 tissue model's sample volume is written here")
    spacing = card["input_spec"]["spacing_mm"][0]
    root = V.nilearn_data_dir()
    t1, affine, _ = V.load_volume(root / V.MNI152_FILES["t1"])
    factor = V.resolution_factor(spacing)
    t1, affine = V.block_mean(t1, factor), V.block_affine(affine, factor)
    starts = [(s - c) // 2 for s, c in zip(t1.shape, VOLUME_CROP)]
    crop = t1[tuple(slice(a, a + c) for a, c in zip(starts, VOLUME_CROP))]
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ np.array(starts, dtype=np.float64)
    V.save_nifti(folder / "t1_crop.nii.gz", np.round(crop).astype(np.int16), shifted)
    return (f"t1_crop.nii.gz: the centre {' x '.join(map(str, VOLUME_CROP))} voxels of the MNI152 ICBM 2009a "
            f"symmetric T1 template at {spacing:g} mm (block mean; as shipped in the nilearn wheel). "
            "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
            "Institute, McGill University; redistributed under the template's permissive licence.\n")


if __name__ == "__main__":
    for t in sys.argv[1:]:
        print(write_samples(t))
