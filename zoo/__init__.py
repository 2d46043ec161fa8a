"""zoo: one registry, one API and one CLI over reference models from seven domains.

    import zoo
    model = zoo.create("unet3d", pretrained=True)
    zoo.list_models("nerf*"), zoo.list_pretrained(), zoo.model_info("gcn.cora")
    zoo.transforms("gcn.cora")   # raw community input -> what forward expects, from the card

Importing zoo is light: torch and the domain libraries load when a model is first built.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._compat import install as _install_moved_paths

_install_moved_paths()  # zoo.models.cnn & co. still import (deprecated): see zoo._compat

_EXPORTS = {
    "create": "registry", "list_models": "registry", "list_pretrained": "registry",
    "model_info": "registry", "register_model": "registry", "is_model": "registry",
    "save_pretrained": "weights", "push_to_hub": "weights", "download": "registry",
    "transforms": None,  # the module itself, which is callable: zoo.transforms("gcn.cora")
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"zoo.{_EXPORTS[name] or name}")
        value = module if _EXPORTS[name] is None else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return __all__
