"""Novel-view synthesis: a hash-grid NeRF in the spirit of Instant-NGP (nerf) and the original NeRF (nerf_vanilla).

Parts:
  model.py    HashNeRF, the vanilla NeRF, ray sampling and rendering, their builders
  task.py     novel_view (TASK): ray batches, photometric loss, PSNR, turntables
  data.py     Blender and nerfstudio scene readers, the procedural scene, camera helpers

Shared pieces it uses: zoo.blocks.encoding and zoo.blocks.hash_encoding.

Recipes: recipes/nerf/ (finetune, lego, lego_gpu, vanilla_lego); `zoo recipes` lists them,
docs/models/nerf.md describes the family and its published weights.
"""
