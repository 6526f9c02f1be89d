"""One scan through a model: normalised as in training, brought to the model's grid, super-
resolved slice by slice (`inference.SliceRunner`, the code `report` runs), clipped to [0, 1],
optionally made k-space consistent, and mapped back to the scan's intensity range."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torch

from mrisr_ray.data.cache import Protocol
from mrisr_ray.data.degrade import degrade
from mrisr_ray.data.volume import foreground_slices
from mrisr_ray.errors import UserInputError
from mrisr_ray.inference import SliceRunner, ensemble
from mrisr_ray.metrics import SubjectScore, score_subject
from mrisr_ray.predict.grid import ZERO_FILLED_OUTSIDE, outside_energy, zero_fill, zero_filled_affine
from mrisr_ray.predict.models import Model
from mrisr_ray.predict.scan import Scan, to_file_orientation
from mrisr_ray.progress import Track, no_progress
from mrisr_ray.report.classical import data_consistency
from mrisr_ray.resources import resolve_device

SYNTHETIC_SCAN = re.compile(r"synth\d{3}\.nii(\.gz)?")  # data/synthetic.py: write_cohort's names
SPACING_TOLERANCE = 0.25  # relative in-plane voxel-size difference from training worth a warning
# Slices run between two progress updates (at least; rounded up to a whole multiple of what runs at
# once): a 5-fold ensemble on CPU takes ~45 s a volume, which one step per scan would leave silent
# (reports/benchmarks/predict.json).
PROGRESS_SLICES = 16


@dataclass(frozen=True)
class Options:
    degrade: bool = False  # the input is HR: degrade it as in training, score LR and SR against it
    zero_fill: bool = False  # the input is a low-resolution scan: zero-pad its k-space to the grid
    dc: bool = False  # k-space data consistency on the output (the report's +DC rows)
    keep: float | None = None  # None: the model's training data's (else the default protocol's)
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int | None = None  # slices per forward (default: 1 per CPU thread, 16 on a GPU)


@dataclass(frozen=True)
class Scores:
    """docs/metrics.md's protocol, against the (normalised) input, on its foreground slices."""

    lr: SubjectScore
    sr: SubjectScore
    slices: int


@dataclass
class Prediction:
    image: nib.Nifti1Image  # in the input's orientation, ready to write
    seconds: float  # normalisation, network, data consistency, mapping back: no file I/O, no scoring
    scores: Scores | None = None  # with --degrade
    warnings: list[str] = field(default_factory=list)


def inference_device(device: str) -> torch.device:
    """This machine's device for `--device` (predict runs here, not on a Ray cluster)."""
    on_gpu = resolve_device(device)
    if on_gpu and not torch.cuda.is_available():
        raise UserInputError("--device cuda: no CUDA device is available here")
    return torch.device("cuda" if on_gpu else "cpu")


class Predictor:
    """A model made ready to run on many scans: its generators prepared once on the device."""

    def __init__(self, model: Model, options: Options):
        if options.degrade and options.zero_fill:
            raise UserInputError("--degrade (the input is HR) and --zero-fill (the input is LR) exclude "
                                 "each other")
        if options.batch_size is not None and options.batch_size < 1:
            raise UserInputError(f"--batch-size must be at least 1, got {options.batch_size}")
        self.model, self.options = model, options
        recorded = model.data.keep if model.data else Protocol().keep
        self.keep = recorded if options.keep is None else options.keep
        if not 0.0 < self.keep <= 1.0:
            raise UserInputError(f"--keep must be in (0, 1], got {self.keep}")
        self.device = inference_device(options.device)
        self.runners = [SliceRunner(g, self.device, options.batch_size) for g in model.generators]
        # A GPU batch, or one batch per CPU thread (inference.py), runs at once: steps of whole
        # multiples of it keep every batch full and every thread busy.
        width = self.runners[0].batch_size * (1 if self.device.type == "cuda" else torch.get_num_threads())
        self.step = width * math.ceil(PROGRESS_SLICES / width)

    def __call__(self, scan: Scan, track: Track = no_progress, description: str = "") -> Prediction:
        """`scan` super-resolved, `self.step` slices at a time through `track`."""
        start = time.perf_counter()
        data = self.model.data
        clip = data.clip_percentiles if data else None
        # (S, H, W): axial slices, on the device for every step from here on.
        volume = torch.from_numpy(np.moveaxis(scan.data, -1, 0).copy()).to(self.device)
        lo, hi = np.percentile(scan.data, clip) if clip else (scan.data.min(), scan.data.max())
        lo, hi = float(lo), float(hi)
        if hi <= lo:
            raise UserInputError(f"{scan.path}: its {clip} percentiles are equal ({lo:g}): nothing to scale")
        x = (volume.clamp(lo, hi) - lo) / (hi - lo)  # as `read_volume` normalises training scans
        warnings, affine = self._warnings(scan, x), scan.affine
        if self.options.zero_fill:
            lr = zero_fill(x, self.keep)
            affine = zero_filled_affine(affine, tuple(x.shape[1:]), tuple(lr.shape[1:]))
        elif self.options.degrade:
            lr = degrade(x, self.keep)
        else:
            lr = x
        # The plain console counts steps, not slices: the description says what a step is.
        name = f"{description or scan.path.name} ({len(lr)} slices, {self.step} a step)"
        steps = track(range(0, len(lr), self.step), name)
        sr = torch.cat([ensemble(self.runners, lr[s : s + self.step]) for s in steps]).clamp(0.0, 1.0)
        if self.options.dc:
            sr = data_consistency(sr, lr, self.keep).clamp(0.0, 1.0)
        out = np.moveaxis((sr * (hi - lo) + lo).cpu().numpy(), 0, -1)
        seconds = time.perf_counter() - start
        scores = self._scores(scan, x.cpu(), lr.cpu(), sr.cpu()) if self.options.degrade else None
        return Prediction(image=to_file_orientation(scan, out, affine), seconds=seconds, scores=scores,
                          warnings=warnings)

    def _scores(self, scan: Scan, hr: torch.Tensor, lr: torch.Tensor, sr: torch.Tensor) -> Scores | None:
        kept = foreground_slices(np.moveaxis(hr.numpy(), 0, -1))
        if kept.size == 0:
            return None
        name, truth = scan.path.name, hr[kept].numpy()
        return Scores(lr=score_subject(name, lr[kept].numpy(), truth),
                      sr=score_subject(name, sr[kept].numpy(), truth), slices=int(kept.size))

    def _warnings(self, scan: Scan, x: torch.Tensor) -> list[str]:
        """What makes this scan unlike the model's inputs."""
        found, data = [], self.model.data
        if data is not None and data.origin == "synthetic" and not SYNTHETIC_SCAN.fullmatch(scan.path.name):
            found.append(f"{self.model.label} was trained on the synthetic cohort, not on real scans: "
                         "expect worse results than its report shows")
        if data is not None and not self.options.zero_fill:
            ratios = [a / b for a, b in zip(scan.spacing, data.spacing, strict=True)]
            if max(abs(r - 1.0) for r in ratios) > SPACING_TOLERANCE:
                hint = " (a low-resolution scan? --zero-fill)" if min(ratios) > 1.0 else ""
                found.append(f"in-plane voxels of {scan.spacing[0]:.2f}×{scan.spacing[1]:.2f} mm; the model "
                             f"was trained on {data.grid()}{hint}")
        if not self.options.zero_fill:
            outside = outside_energy(x, self.keep)
            if self.options.degrade and outside < ZERO_FILLED_OUTSIDE:
                found.append(f"only {outside:.2%} of its spectral energy lies outside the kept block: it "
                             "looks zero-filled already, and --degrade degrades it again")
            elif not self.options.degrade and outside >= ZERO_FILLED_OUTSIDE:
                found.append(f"{outside:.2%} of its spectral energy lies outside the kept block (a zero-"
                             "filled LR image: ~0.1%): for a full-resolution scan pass --degrade, for a "
                             "low-resolution one --zero-fill")
        return found
