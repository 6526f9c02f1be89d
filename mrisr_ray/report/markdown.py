"""report.md: table, configurations, figures, protocol, deviations and data provenance."""

from __future__ import annotations

import itertools

import numpy as np

from mrisr_ray.config import flatten, losses_described, perceptual_mode, warmup_epochs
from mrisr_ray.deviations import deviations
from mrisr_ray.metrics import sample_sd
from mrisr_ray.registry import model_spec
from mrisr_ray.report.evaluate import LABELS, LR_ROW, Evaluation, paired_test, table_rows, worse_than_input
from mrisr_ray.report.sources import ModelSource

CONFIGURATIONS_HEADING = "## Configurations"  # follows the results: the demo's console stops there
# Seed paper, Table 1 (IXI T2, Guy's, 955 test slices; normalisation and metric protocol unstated).
PAPER_TABLE = [("GAN-CPCE (paper, quoted)", 33.2031, 0.9563), ("GAN-CIRCLE (paper, quoted)", 32.2995, 0.9465)]


def protocol(keep: float) -> str:
    """The metric protocol; `keep`: the share of each k-space axis the cache's LR kept."""
    return ("Test subjects only (subject-level split; no slice of a test subject was used for training, "
            "validation or for choosing the TV weight). Volumes min-max normalised to [0, 1]; LR made by "
            f"keeping the central {keep * keep:.0%} of 2-D k-space ({keep:.0%} of each axis); outputs "
            "clipped to [0, 1]. Per subject: PSNR from the MSE over all kept slices (data range 1.0); SSIM = "
            "mean over slices of 2-D SSIM (Gaussian window σ = 1.5, population covariance, data range 1.0), "
            "on whole slices. Table: mean ± SD over subjects; 'pooled' = mean over all slices (what the "
            "paper most likely reported). Details: docs/metrics.md.")


def fmt(mean: float, sd: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def results_table(evaluation: Evaluation) -> list[str]:
    lines = ["| method | PSNR (dB) | SSIM | pooled PSNR | pooled SSIM | ΔPSNR vs LR | ΔSSIM vs LR |",
             "|---|---|---|---|---|---|---|"]
    for r in table_rows(evaluation):
        worse = r["method"] != LR_ROW and (r["psnr_gain"] < 0 or r["ssim_gain"] < 0)
        method = f"{r['method']} — **worse than its input**" if worse else r["method"]
        lines.append(f"| {method} | {fmt(r['psnr_mean'], r['psnr_sd'], 2)} | "
                     f"{fmt(r['ssim_mean'], r['ssim_sd'], 4)} | {r['pooled_psnr']:.2f} | "
                     f"{r['pooled_ssim']:.4f} | {r['psnr_gain']:+.2f} | {r['ssim_gain']:+.4f} |")
    for name, psnr, ssim in PAPER_TABLE:
        lines.append(f"| {name} — other protocol | {psnr:.2f} | {ssim:.4f} | | | | |")
    return lines


def dc_verdict(evaluation: Evaluation, label: str) -> str:
    rows = {r["method"]: r for r in table_rows(evaluation)}
    if label not in rows:
        return ""
    plain, dc = rows[label], rows[f"{label} +DC"]
    psnr, ssim = dc["psnr_mean"] - plain["psnr_mean"], dc["ssim_mean"] - plain["ssim_mean"]
    verdict = "helps" if psnr > 0 and ssim > 0 else "hurts" if psnr < 0 and ssim < 0 else "is mixed"
    return f"- {label}: +DC {verdict}: PSNR {psnr:+.2f} dB, SSIM {ssim:+.4f} (mean over subjects)."


def configuration_section(source: ModelSource) -> list[str]:
    label = LABELS[source.model]
    lines = [f"### {label}", "", f"- Models: {source.how}."]
    if source.fold_psnr:
        psnr, ssim = np.array(source.fold_psnr), np.array(source.fold_ssim)
        lines.append(f"- Cross-validation of the best trial ({len(psnr)} folds): PSNR "
                     f"{fmt(psnr.mean(), sample_sd(psnr), 2)} dB, SSIM "
                     f"{fmt(ssim.mean(), sample_sd(ssim), 4)}.")
    if source.default_cv:
        p, ps, s, ss, done = source.default_cv
        partial = f" over {done} of {len(source.fold_psnr)} folds (stopped early by ASHA)" \
            if done < len(source.fold_psnr) else ""
        losses = losses_described(source.default_config) if source.default_config else "unknown"
        lines.append(f"- Trial 0 of the same study (its base configuration, with {losses}): PSNR "
                     f"{fmt(p, ps, 2)} dB, SSIM {fmt(s, ss, 4)}{partial}.")
    perceptual = perceptual_mode(source.config)
    if perceptual not in (None, "vgg"):
        lines.append(f"- **Perceptual loss opt-out: `{perceptual}`** (no ImageNet VGG-19 weights).")
    c, values = source.config, flatten(source.config)
    # λp weighs nothing without the perceptual term: not listed as if it did.
    weights = [k for k in (*model_spec(c.model).loss_keys, "loss.lambda_adv", "loss.lambda_l1")
               if isinstance(values[k], float) and not (k == "loss.lambda_p" and perceptual == "none")]
    loss = ", ".join(f"{k.removeprefix('loss.')} {values[k]:.3g}" for k in weights)
    lines.append(f"- Configuration ({losses_described(c)}): {loss}; L1 warm-up {warmup_epochs(c.train)} "
                 "epochs;")
    lines.append(f"  lr {c.train.lr:.3g} (decay after {c.train.decay_start:.2f} of "
                 f"{c.train.epochs} epochs to {c.train.lr_final:.3g}), n_critic {c.train.n_critic}, "
                 f"batch {c.train.batch_size}, patches {c.data.patch_size}×{c.data.patch_size}.")
    return [*lines, ""]


CAPTIONS = {
    "comparison.png": "Example test slices at native resolution (one image pixel per figure pixel): HR, "
                      "the LR input, TV and each model with and without +DC, each titled with its slice "
                      "PSNR / SSIM; beneath, |method − HR| on one scale per slice.",
    "subjects_boxplot.png": "PSNR and SSIM of every test subject per method, each subject's points joined "
                            "across methods.",
    "cv_per_fold.png": "Best validation PSNR of the best trial on each cross-validation fold.",
}


def caption(name: str) -> str:
    """What a figure shows (a study's own figures are named `<study>_history.png`, `_importance.png`)."""
    if name in CAPTIONS:
        return CAPTIONS[name]
    study, _, kind = name.removesuffix(".png").rpartition("_")
    return {"history": f"Optuna optimisation history of study {study}: each trial's CV score and the "
                       "best so far.",
            "importance": f"Optuna parameter importances (fANOVA) of study {study}."}.get(kind, name)


def render(evaluation: Evaluation, sources: list[ModelSource], data: dict, figures: list[str]) -> str:
    lines = ["# mrisr-ray report", ""]
    if data["synthetic"]:
        lines += ["> **Synthetic cohort: these numbers are not IXI numbers.**", ""]
    lines += [f"Data: `{data['cache']}` ({data['origin']}), protocol `{data['protocol_hash']}`, "
              f"{data['n_test']} test subjects, {data['n_slices']} slices. TV weight λ = "
              f"{evaluation.tv_weight:g}, chosen on validation subjects.", "",
              "## Results on the test subjects", "", *results_table(evaluation), ""]
    lines += [f"**{line}.**" for line in worse_than_input(evaluation)]
    lines += [""] if worse_than_input(evaluation) else []
    labels = [LABELS[s.model] for s in sources]
    pairs = [(label, LR_ROW) for label in labels] + list(itertools.combinations(labels, 2))
    lines += ["Paired Wilcoxon signed-rank tests over subjects:"]
    lines += [f"- {a} vs {b}: PSNR {paired_test(evaluation, a, b, 'psnr')}, SSIM "
              f"{paired_test(evaluation, a, b, 'ssim')}." for a, b in pairs]
    lines += [""]
    lines += ["k-space data consistency (+DC, no training):", *[dc_verdict(evaluation, LABELS[s.model])
                                                              for s in sources], ""]
    lines += [CONFIGURATIONS_HEADING, "", *[line for s in sources for line in configuration_section(s)]]
    lines += ["## Figures", ""]
    for name in figures:
        lines += [f"![{name}]({name})", "", f"*{caption(name)}*", ""]
    lines += ["## Protocol", "", protocol(data["keep"]), "",
              "The paper's Table 1 is quoted as published; its normalisation and metric protocol are "
              "not stated, so its numbers are not comparable with the rows above.", ""]
    lines += ["## Deviations from the paper", ""]
    for source in sources:
        lines += [f"- {LABELS[source.model]}: {deviations(source.config)}"]
    lines += ["", "## Data provenance", "", data["provenance"], ""]
    return "\n".join(lines)
