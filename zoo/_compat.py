"""Old module paths (zoo.models.cnn, zoo.tasks.rl, zoo.data.bev, ...) for one release, with a DeprecationWarning.

The families moved into packages, `zoo/families/<family>/` (model.py, task.py, data.py, augment.py).
An import of an old path returns the SAME module object as the new path (so `isinstance`, pickles
and monkeypatching agree), through a meta-path finder that `import zoo` installs. Remove in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

_FAMILIES = ("cnn", "unet3d", "bev", "gcn", "nerf", "patchcore", "dqn")

MOVED: dict[str, str] = {f"zoo.models.{f}": f"zoo.families.{f}.model" for f in _FAMILIES}
MOVED.update({
    "zoo.tasks.classification": "zoo.families.cnn.task",
    "zoo.tasks.volume_segmentation": "zoo.families.unet3d.task",
    "zoo.tasks.bev_segmentation": "zoo.families.bev.task",
    "zoo.tasks.node_classification": "zoo.families.gcn.task",
    "zoo.tasks.novel_view": "zoo.families.nerf.task",
    "zoo.tasks.anomaly_detection": "zoo.families.patchcore.task",
    "zoo.tasks.rl": "zoo.families.dqn.task",
    "zoo.data.volumes": "zoo.families.unet3d.data",
    "zoo.data.bev": "zoo.families.bev.data",
    "zoo.data.graphs": "zoo.families.gcn.data",
    "zoo.data.scenes": "zoo.families.nerf.data",
    "zoo.data.anomaly": "zoo.families.patchcore.data",
    "zoo.data.defects_heldout": "zoo.families.patchcore.heldout",
    "zoo.data.envs": "zoo.families.dqn.data",
    "zoo.augment.rig": "zoo.families.bev.augment",
})


def deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} moved to {new}; the old path goes away in zoo 0.3", DeprecationWarning,
                  stacklevel=stacklevel)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target
        self.target_spec = None

    def create_module(self, spec):
        deprecated(spec.name, self.target, stacklevel=2)
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.target_spec  # the import system stamped the alias's spec on it: undo that


class AliasFinder(importlib.abc.MetaPathFinder):
    """Answers only for the names in MOVED; everything else goes to the normal finders."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
