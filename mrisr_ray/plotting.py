"""Plotting shared by training, tuning, the report and the benchmarks: matplotlib without a
display, and the per-epoch sample grid (LR | SR | HR | error) as PNG bytes."""

from __future__ import annotations

import io
from types import ModuleType

import numpy as np


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (workers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sample_grid_png(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, title: str = "") -> bytes:
    """PNG of one row per slice, columns LR | SR | HR | |SR − HR| for (n, H, W) arrays."""
    plt = pyplot()
    rows = len(hr)
    fig, axes = plt.subplots(rows, 4, figsize=(10, 2.6 * rows), squeeze=False)
    error_max = max(float(np.abs(sr - hr).max()), 1e-6)
    for r in range(rows):
        panels = [(lr[r], "LR (zero-filled)", 1.0), (np.clip(sr[r], 0, 1), "SR", 1.0),
                  (hr[r], "HR", 1.0), (np.abs(sr[r] - hr[r]), f"|SR − HR| (max {error_max:.2f})",
                                       error_max)]
        for c, (image, label, vmax) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image.T, cmap="gray" if c < 3 else "inferno", vmin=0, vmax=vmax,
                      origin="lower")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
