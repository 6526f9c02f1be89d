"""Deviations from the seed paper, one short line each (the full table is docs/models.md).
Logged as the MLflow tag `deviations` on every run and printed in reports."""

from __future__ import annotations

COMMON = [
    "gradient penalty: per-sample L2 norm over all pixels (official code: one-axis norm)",
    "mean-reduced losses (official code: pixel sums)",
    "data: metric protocol and min-max normalisation written down (the paper gives neither)",
]
BY_MODEL = {
    "cpce": [
        "VGG-19: torchvision weights with ImageNet mean/std (paper: Caffe BGR)",
        "lr schedule: the MRI paper's (1e-4 then linear to 2e-6), not the CT code's 1e-4/(e+1)",
    ],
    "circle": [
        "same-grid G and F: stride 1, no up/down-sampling, global residual",
        "reconstruction: A 24, B 8->8, one 3x3 conv 32->1",
        "dropout p=0.2 active in training (official code: inactive)",
        "critic: 4 stages 4x4/s2 64-512 + FC 1024 + FC 1 (official code: PatchGAN)",
        "JST on G(x) with tau; GP weight 10; Adam (0.5, 0.999); 4 critic steps",
    ],
}


def deviations(model: str, perceptual: str | None = None) -> str:
    lines = COMMON + BY_MODEL[model]
    if model == "cpce" and perceptual and perceptual != "vgg":
        lines = [*lines, f"perceptual loss opt-out: {perceptual} (no ImageNet VGG-19 weights)"]
    return "; ".join(lines)
