"""The report's figures (PNG): Fig. 4/5-style panels at native resolution, per-subject scores,
CV score per fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrisr_ray.metrics import psnr_from_mse, slice_ssim
from mrisr_ray.plotting import pyplot

DPI = 100
TITLE_PX, GAP_PX, LABEL_PX, COLORBAR_PX = 36, 10, 30, 70  # around each 1:1 image panel
PAIRED_LINES_BELOW = 20  # subjects: below this many, each subject's points are joined


def comparison_panels(examples: dict[str, np.ndarray], ids: list[tuple[str, int]], methods: list[str],
                      path: Path) -> Path:
    """For each example slice (labelled subject · slice): a row of HR and each method, one image
    pixel per figure pixel, each titled with its slice PSNR/SSIM; beneath it a row of |method − HR|
    on one scale per slice (twice the LR input's 99.5th percentile, so that small differences
    between methods stay visible), each with its mean absolute error. A colour bar ends each row."""
    plt = pyplot()
    hr = examples["HR"]
    columns = ["HR", *methods]
    height, width = hr.shape[-2:]
    panel_w, panel_h = height + GAP_PX, width + TITLE_PX + GAP_PX  # shown transposed
    fig_w, fig_h = LABEL_PX + len(columns) * panel_w + COLORBAR_PX, 2 * len(hr) * panel_h + GAP_PX
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)

    def axes_at(row: int, column: int):
        left = LABEL_PX + column * panel_w
        bottom = fig_h - (row + 1) * panel_h
        return fig.add_axes([left / fig_w, bottom / fig_h, height / fig_w, width / fig_h])

    for i, (subject, index) in enumerate(ids):
        truth = hr[i]
        error_max = 2 * max(float(np.percentile(np.abs(examples[methods[0]][i] - truth), 99.5)), 1e-3)
        fig.text(4 / fig_w, 1 - (2 * i + 1) * panel_h / fig_h, f"{subject} · slice {index}", rotation=90,
                 va="center", fontsize=9)
        for j, name in enumerate(columns):
            image = examples[name][i]
            ax = axes_at(2 * i, j)
            shown = ax.imshow(image.T, cmap="gray", vmin=0, vmax=1, origin="lower", interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{name}\n{'reference' if name == 'HR' else slice_scores(image, truth)}", fontsize=8)
            if j == len(columns) - 1:
                colour_bar(fig, shown, ax, "intensity")
            err = axes_at(2 * i + 1, j)
            err.set_axis_off()
            if name == "HR":
                continue
            difference = np.abs(image - truth)
            shown = err.imshow(difference.T, cmap="inferno", vmin=0, vmax=error_max, origin="lower",
                               interpolation="nearest")
            err.set_title(f"|{name} − HR|\nmean {difference.mean():.4f}", fontsize=8)
            if j == len(columns) - 1:
                colour_bar(fig, shown, err, "|error|")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def slice_scores(image: np.ndarray, truth: np.ndarray) -> str:
    """`36.41 dB / 0.9412`: the panel's own PSNR and SSIM (the image is already in [0, 1])."""
    return f"{psnr_from_mse(float(((image - truth) ** 2).mean())):.2f} dB / {slice_ssim(image, truth):.4f}"


def colour_bar(fig, image, ax, label: str) -> None:
    box, fig_w = ax.get_position(), fig.get_size_inches()[0] * DPI
    bar = fig.add_axes([box.x1 + 8 / fig_w, box.y0, 12 / fig_w, box.height])
    fig.colorbar(image, cax=bar).set_label(label, fontsize=8)
    bar.tick_params(labelsize=7)


def subject_boxplots(scores: dict[str, list], path: Path) -> Path:
    """PSNR and SSIM per test subject and method: each subject's points (joined across methods
    when there are fewer than PAIRED_LINES_BELOW subjects) over the boxes. The axis spans the
    boxes' whiskers; a point beyond it sits on the edge as a triangle and is counted in the title."""
    plt = pyplot()
    methods = list(scores)
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.7 * len(methods)), 5))
    for ax, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        values = np.array([[getattr(s, metric) for s in scores[m]] for m in methods])  # method × subject
        boxes = ax.boxplot(values.T, showfliers=False, widths=0.5)
        whiskers = np.concatenate([w.get_ydata() for w in boxes["whiskers"]])
        low, high = whiskers.min(), whiskers.max()
        pad = 0.08 * (high - low or abs(high) or 1.0)
        low, high = low - pad, high + pad
        x = np.arange(1, len(methods) + 1)
        shown = np.clip(values, low, high)
        if values.shape[1] < PAIRED_LINES_BELOW:
            ax.plot(x, shown, color="0.6", lw=0.7, alpha=0.7, zorder=2)
        inside = (values >= low) & (values <= high)
        for column, (vals, keep) in enumerate(zip(values, inside, strict=True)):
            ax.scatter(np.full(keep.sum(), x[column]), vals[keep], s=14, color="tab:blue", zorder=3)
            for value in vals[~keep]:
                ax.scatter([x[column]], [high if value > high else low], marker="^" if value > high else "v",
                           s=40, color="tab:red", zorder=3)
        ax.set_ylim(low, high)
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
        beyond = int((~inside).sum())
        note = f"; {beyond} beyond the axis (red triangles)" if beyond else ""
        ax.set_title(f"{label} per test subject (n = {values.shape[1]}){note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def cv_per_fold(cv: dict[str, list[float]], path: Path) -> Path:
    """Best trial's best validation PSNR on each fold, per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in cv.items():
        ax.plot(range(len(values)), values, marker="o", label=label)
    folds = max(len(v) for v in cv.values())
    ax.set_xticks(range(folds))
    ax.set_xlim(-0.5, folds - 0.5)
    ax.set_xlabel("fold")
    ax.set_ylabel("best validation PSNR (dB)")
    ax.set_title("Cross-validation score per fold (best trial)", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(cv), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
