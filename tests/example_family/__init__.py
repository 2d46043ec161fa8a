"""The example family: a package laid out as zoo/families/<family>/ is, added from outside zoo.

Parts:
  model.py    ToyMLP, registered as toy_mlp (task="toy")
  task.py     the "toy" task (TASK): generated blobs, cross-entropy, accuracy
  data.py     make_blobs: Gaussian blobs from a seed

Recipes: tests/example_family/recipes/toy.yaml. Loaded with ZOO_PLUGINS=tests.example_family.model (tests/conftest.py
sets it), the way a third-party family is; the registry then finds the task next to the model by
its name. It proves the machinery end to end: the suite trains it, kills and resumes it, runs it
under torchrun, exports, publishes and reproduces it. docs/adding-a-family.md walks through it.
"""
