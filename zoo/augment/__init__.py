"""Batch augmentation on the model's device, after the data loader (Kornia where it fits).

Every module takes whole batches, keeps them on their device, and accepts `generator=` (a
`torch.Generator` or an int seed) for a call that is reproducible on its own; without it, torch's
global RNG is used, so `torch.manual_seed` makes a run reproducible (see zoo.augment.rng).
"""

from zoo.augment.classification import ClassificationAugment
from zoo.augment.image_mask import ImageMaskAugment
from zoo.augment.rig import RigAugment, RigBatch
from zoo.augment.rng import seeded
from zoo.augment.volume import VolumeAugment3D

__all__ = ["ClassificationAugment", "ImageMaskAugment", "RigAugment", "RigBatch", "VolumeAugment3D", "seeded"]
