"""Deprecated: the model files moved to zoo/families/<family>/model.py.

`import zoo.models.cnn` still works for one release (a DeprecationWarning; the same module object
as zoo.families.cnn.model): see zoo._compat. The `zoo.models` entry-point group for plug-in
families keeps its name.
"""
