"""Scoring every method on the test subjects with the one metric protocol (docs/metrics.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mrisr_ray.data.cache import Cache
from mrisr_ray.data.degrade import degrade
from mrisr_ray.inference import SliceRunner, ensemble
from mrisr_ray.metrics import SubjectScore, score_subject, summarize
from mrisr_ray.progress import Track, no_progress
from mrisr_ray.registry import MODELS
from mrisr_ray.report.classical import TV_WEIGHTS, data_consistency, tv_reconstruct
from mrisr_ray.report.sources import ModelSource

LR_ROW = "LR input (zero-filled)"
TV_ROW = "TV reconstruction"
LABELS = {name: spec.label for name, spec in MODELS.items()}
TV_VALIDATION_SLICES = 4  # per validation subject, evenly spaced


@dataclass
class Evaluation:
    scores: dict[str, list[SubjectScore]]  # method → one score per test subject
    tv_weight: float
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # method → (n, H, W) slices
    example_ids: list[tuple[str, int]] = field(default_factory=list)  # (subject, slice) of each


def choose_tv_weight(cache: Cache, subjects: list[str], track: Track = no_progress) -> float:
    """The λ of the TV baseline with the best mean per-subject PSNR on validation subjects.

    Each validation subject's TV_VALIDATION_SLICES slices are solved as one batch, as `evaluate`
    solves a test subject, and scored as the report scores a test subject (`score_subject`:
    output clipped to [0, 1], PSNR from the MSE over the subject's slices); λ maximises the mean
    of those PSNRs over subjects. Never called on test subjects.
    """
    hrs = [torch.from_numpy(np.array(cache.slices(s, TV_VALIDATION_SLICES))) for s in subjects]
    lrs = [degrade(hr, cache.keep) for hr in hrs]
    mean_psnr = []
    for w in track(TV_WEIGHTS, "Choosing the TV weight on validation subjects"):
        scores = [score_subject(s, tv_reconstruct(lr, cache.keep, w).numpy(), hr.numpy())
                  for s, lr, hr in zip(subjects, lrs, hrs, strict=True)]
        mean_psnr.append(summarize(scores).psnr_mean)
    return TV_WEIGHTS[int(np.argmax(mean_psnr))]


def evaluate(cache: Cache, subjects: list[str], sources: list[ModelSource], tv_weight: float,
             example_slices: dict[str, list[int]], track: Track) -> Evaluation:
    """Scores of the LR input, the TV baseline and each model (with and without +DC)."""
    runners = {source.model: [SliceRunner(g) for g in source.generators] for source in sources}
    result = Evaluation(scores={}, tv_weight=tv_weight)
    examples: dict[str, list[np.ndarray]] = {}
    for subject in track(subjects, "Scoring test subjects"):
        hr = torch.from_numpy(np.array(cache.slices(subject)))
        lr = degrade(hr, cache.keep)
        outputs = {LR_ROW: lr, TV_ROW: tv_reconstruct(lr, cache.keep, tv_weight)}
        for source in sources:
            sr = ensemble(runners[source.model], lr)
            outputs[LABELS[source.model]] = sr
            outputs[f"{LABELS[source.model]} +DC"] = data_consistency(sr.clamp(0, 1), lr, cache.keep)
        for method, output in outputs.items():
            result.scores.setdefault(method, []).append(
                score_subject(subject, output.numpy(), hr.numpy()))
            for index in example_slices.get(subject, []):
                examples.setdefault(method, []).append(np.clip(output[index].numpy(), 0, 1))
        for index in example_slices.get(subject, []):
            examples.setdefault("HR", []).append(hr[index].numpy())
            result.example_ids.append((subject, index))
    result.examples = {k: np.stack(v) for k, v in examples.items()}
    return result


def table_rows(evaluation: Evaluation) -> list[dict]:
    """One row per method: mean ± SD over subjects, pooled per-slice, gain over the LR input."""
    lr = summarize(evaluation.scores[LR_ROW])
    rows = []
    for method, scores in evaluation.scores.items():
        s = summarize(scores)
        rows.append({"method": method, "psnr_mean": s.psnr_mean, "psnr_sd": s.psnr_sd,
                     "ssim_mean": s.ssim_mean, "ssim_sd": s.ssim_sd, "pooled_psnr": s.pooled_psnr,
                     "pooled_ssim": s.pooled_ssim, "psnr_gain": s.psnr_mean - lr.psnr_mean,
                     "ssim_gain": s.ssim_mean - lr.ssim_mean, "n_subjects": s.n_subjects,
                     "n_slices": s.n_slices})
    return rows


def worse_than_input(evaluation: Evaluation) -> list[str]:
    """One line per method whose mean PSNR or SSIM over subjects is below the LR input's."""
    lines = []
    for r in table_rows(evaluation):
        if r["method"] != LR_ROW and (r["psnr_gain"] < 0 or r["ssim_gain"] < 0):
            lines.append(f"{r['method']} is worse than its input: PSNR {r['psnr_gain']:+.2f} dB, "
                         f"SSIM {r['ssim_gain']:+.4f} against the LR input")
    return lines


def paired_test(evaluation: Evaluation, a: str, b: str, metric: str) -> str:
    """Wilcoxon signed-rank test over subjects between methods a and b."""
    from scipy.stats import wilcoxon

    if a not in evaluation.scores or b not in evaluation.scores:
        return "n/a"
    x = np.array([getattr(s, metric) for s in evaluation.scores[a]])
    y = np.array([getattr(s, metric) for s in evaluation.scores[b]])
    n = len(x)
    if n < 6:
        return f"n too small (n = {n})"
    if np.allclose(x, y):
        return f"identical (n = {n})"
    return f"p = {wilcoxon(x, y).pvalue:.3g} (n = {n})"
