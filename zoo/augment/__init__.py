"""Batch augmentation on the model's device, after the data loader (Kornia where it fits).

Every module takes whole batches, keeps them on their device, and accepts `generator=` (a
`torch.Generator` or an int seed) for a call that is reproducible on its own; without it, torch's
global RNG is used, so `torch.manual_seed` makes a run reproducible (see zoo.augment.rng).

The shared augmentations live here; a family's own (the BEV rig transform) lives in its package,
zoo/families/<family>/augment.py.
"""

from zoo.augment.classification import ClassificationAugment
from zoo.augment.image_mask import ImageMaskAugment
from zoo.augment.rng import seeded
from zoo.augment.volume import VolumeAugment3D

__all__ = ["ClassificationAugment", "ImageMaskAugment", "VolumeAugment3D", "seeded"]

_MOVED = {"RigAugment": "zoo.families.bev.augment", "RigBatch": "zoo.families.bev.augment"}


def __getattr__(name: str):
    # zoo.augment.RigAugment: deprecated (zoo.augment cannot import the bev family eagerly: bev's
    # augment module imports zoo.augment.color, which would make a cycle)
    if name in _MOVED:
        import importlib

        from zoo._compat import deprecated

        deprecated(f"zoo.augment.{name}", f"{_MOVED[name]}.{name}")
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'zoo.augment' has no attribute {name!r}")
