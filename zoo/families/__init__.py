"""Model families, one package each: zoo/families/<family>/ with model.py, task.py, data.py and augment.py.

A family's model.py registers its architectures (zoo.register_model); its task.py defines the task
those models name (`task=...`) as TASK; data.py holds its data readers and generators, augment.py its
own augmentation when zoo.augment has none that fits. Families sit on shared pieces: zoo.blocks,
zoo.augment, zoo.engine, zoo.tasks.base and the generic readers in zoo.data. The registry imports
every family's model.py on first use, so adding a family is adding a folder here (plus its recipes
in recipes/<family>/, its weights folders and a docs page); see docs/adding-a-family.md.
"""
