"""Image classification: small ResNet-style CNNs (cnn, cnn_medium, cnn_large) and a `timm` wrapper.

Parts:
  model.py    CNN, the cnn/cnn_medium/cnn_large builders, the timm wrapper, timm_input_spec
  task.py     classification (TASK): image sets, ClassificationAugment, cross-entropy, accuracy, TTA

Shared pieces it uses: zoo.data.images (Fashion-MNIST, digits, image folders), zoo.augment.classification.

Recipes: recipes/cnn/ (digits, distill_fashion_mnist, fashion_mnist, finetune); `zoo recipes` lists
them, docs/models/cnn.md describes the family and its published weights.
"""
