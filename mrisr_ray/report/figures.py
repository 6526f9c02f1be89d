"""The report's figures (PNG): Fig. 4/5-style panels, per-subject box plots, CV score per fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrisr_ray.plotting import pyplot


def comparison_panels(examples: dict[str, np.ndarray], methods: list[str], path: Path,
                      roi: tuple[int, int, int] | None = None) -> Path:
    """Rows: example slices; columns: HR then each method (the first is the LR input), with a
    zoomed ROI inset; a second row per slice shows |method − HR|."""
    plt = pyplot()
    hr = examples["HR"]
    n, columns = len(hr), ["HR", *methods]
    fig, axes = plt.subplots(2 * n, len(columns), figsize=(2.6 * len(columns), 5.2 * n), squeeze=False)
    size = hr.shape[-1] // 4
    for i in range(n):
        r0, c0 = roi[:2] if roi else (hr.shape[-2] // 2 - size // 2, hr.shape[-1] // 2 - size // 2)
        # One error scale per slice, set by the LR input's error so that small differences between
        # methods stay visible; a method far worse than the input saturates.
        error_max = 2 * max(float(np.percentile(np.abs(examples[methods[0]][i] - hr[i]), 99.5)), 1e-3)
        for j, name in enumerate(columns):
            image = examples[name][i]
            ax = axes[2 * i, j]
            ax.imshow(image.T, cmap="gray", vmin=0, vmax=1, origin="lower")
            inset = ax.inset_axes([0.6, 0.6, 0.4, 0.4])
            inset.imshow(image[r0 : r0 + size, c0 : c0 + size].T, cmap="gray", vmin=0, vmax=1,
                         origin="lower")
            inset.set_xticks([])
            inset.set_yticks([])
            ax.add_patch(plt.Rectangle((r0, c0), size, size, fill=False, edgecolor="yellow", lw=0.8))
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, fontsize=9)
            err = axes[2 * i + 1, j]
            err.set_axis_off()
            if name != "HR":
                err.imshow(np.abs(image - hr[i]).T, cmap="inferno", vmin=0, vmax=error_max, origin="lower")
                if i == 0:
                    err.set_title(f"|error| (0–{error_max:.2f})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def subject_boxplots(scores: dict[str, list], path: Path) -> Path:
    plt = pyplot()
    methods = list(scores)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(methods)), 4.5))
    for ax, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.boxplot([[getattr(s, metric) for s in scores[m]] for m in methods])
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(f"{label} per test subject")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def cv_per_fold(cv: dict[str, list[float]], path: Path) -> Path:
    """Best trial's validation PSNR on each fold, per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(1, len(cv))
    for i, (label, values) in enumerate(cv.items()):
        ax.bar(np.arange(len(values)) + i * width, values, width=width, label=label)
    ax.set_xlabel("fold")
    ax.set_ylabel("best validation PSNR (dB)")
    ax.set_title("Cross-validation score per fold (best trial)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
