r"""Knowledge distillation (Hinton et al. 2015) as an engine feature: `train.distill.teacher=TAG`.

The trainer loads the teacher once (frozen, eval mode, on the run's device) into `ctx.extra["teacher"]`;
a task's training step that supports distillation (classification; segmentation's per-voxel logits work
the same way) mixes its own loss with the temperature-scaled KL divergence to the teacher:

.. math::
    L = \alpha\, T^2\, \mathrm{KL}\big(\mathrm{softmax}(z_t / T) \,\|\, \mathrm{softmax}(z_s / T)\big)
        + (1 - \alpha)\, L_\text{task}

The :math:`T^2` keeps the gradient scale of the soft term independent of T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def load_teacher(cfg: dict, device: torch.device) -> dict | None:
    """{"model", "temperature", "alpha"} for `train.distill`, or None when no teacher is set."""
    if not cfg or not cfg.get("teacher"):
        return None
    if cfg["temperature"] <= 0 or not 0 <= cfg["alpha"] <= 1:
        raise ValueError(f"train.distill: temperature must be > 0 and alpha in [0, 1], got {cfg['temperature']} "
                         f"and {cfg['alpha']}")
    from .exporter import load_model

    teacher = load_model(cfg["teacher"]).to(device).eval()
    teacher.requires_grad_(False)
    return {"model": teacher, "temperature": float(cfg["temperature"]), "alpha": float(cfg["alpha"])}


def distill_loss(student_logits: torch.Tensor, inputs: torch.Tensor, task_loss: torch.Tensor,
                 teacher: dict) -> torch.Tensor:
    """Hinton's loss over the class axis (1) of any (B, K, ...) logits; the teacher runs on the same inputs."""
    with torch.no_grad():
        teacher_logits = teacher["model"](inputs).float()
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"train.distill: teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} differ: the teacher must predict the same classes")
    t, alpha = teacher["temperature"], teacher["alpha"]
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_t = F.log_softmax(teacher_logits / t, dim=1)
    kl = F.kl_div(log_s.movedim(1, -1).flatten(0, -2), log_t.movedim(1, -1).flatten(0, -2), log_target=True,
                  reduction="batchmean")
    return alpha * t * t * kl + (1 - alpha) * task_loss
