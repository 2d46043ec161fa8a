"""One file per model family; each registers its architectures with zoo.register_model.

The registry imports every module here on first use, so a new family is one new file.
"""
