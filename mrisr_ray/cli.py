"""The `mrisr-ray` command line: parse, validate, call the library. Heavy imports stay inside
the commands so that `--help` is fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mrisr_ray.errors import UserInputError

app = typer.Typer(
    help="GAN super-resolution for brain MRI (GAN-CPCE, GAN-CIRCLE) with Ray, Optuna and MLflow.\n\n"
    "Example: mrisr-ray prepare --synthetic --out mrisr-work/data/synthetic",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def root() -> None:
    """GAN super-resolution for brain MRI (GAN-CPCE, GAN-CIRCLE) with Ray, Optuna and MLflow."""


WorkdirOption = Annotated[
    Path | None,
    typer.Option("--workdir", help="Work directory for runs (env MRISR_RAY_WORKDIR, default ./mrisr-work)."),
]


def track(items, description: str):
    """Rich progress bar for a loop; quiet when stdout is not a terminal."""
    from rich.progress import track as rich_track

    return rich_track(items, description=description, disable=not sys.stdout.isatty())


@app.command(epilog="Example: mrisr-ray prepare --data-dir IXI-T2/ --sites Guys")
def prepare(
    data_dir: Annotated[Path | None, typer.Option(help="Folder of IXI T2 NIfTI files.")] = None,
    out: Annotated[Path | None, typer.Option(help="Cache folder (default <workdir>/data/<name>).")] = None,
    synthetic: Annotated[bool, typer.Option(help="Generate the embedded synthetic cohort instead.")] = False,
    subjects: Annotated[int, typer.Option(help="Synthetic cohort size.")] = 20,
    sites: Annotated[str, typer.Option(help="all, or a comma list of IXI sites: Guys,HH,IOP.")] = "all",
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    test_fraction: Annotated[float, typer.Option(help="Share of subjects held out for test.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the splits (and of the synthetic cohort).")] = 0,
    keep: Annotated[float, typer.Option(help="Fraction of each k-space axis kept for LR.")] = 0.5,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    workdir: WorkdirOption = None,
) -> None:
    """Prepare a dataset cache (slices, manifest, subject-level splits) from IXI T2 or synthetic data."""
    from mrisr_ray.data.cache import Protocol, prepare_cache
    from mrisr_ray.data.discovery import discover_scans
    from mrisr_ray.data.synthetic import prepare_synthetic_cache
    from mrisr_ray.workdir import resolve_workdir

    if synthetic == (data_dir is not None):
        raise UserInputError("give exactly one of --data-dir DIR or --synthetic")
    if not 0.0 < keep <= 1.0:
        raise UserInputError(f"--keep must be in (0, 1], got {keep}")
    if subjects < 1:
        raise UserInputError(f"--subjects must be positive, got {subjects}")
    name = "synthetic" if synthetic else Path(data_dir).name
    out = out or resolve_workdir(workdir).data / name
    site_list = None if sites == "all" else [s.strip() for s in sites.split(",") if s.strip()]
    common = {"n_folds": folds, "test_fraction": test_fraction, "seed": seed, "overwrite": overwrite,
              "track": track}
    if synthetic:
        if keep != 0.5:
            raise UserInputError("--keep applies to --data-dir; the synthetic cohort uses 0.5")
        summary = prepare_synthetic_cache(out, n_subjects=subjects, **common)
    else:
        scans = discover_scans(data_dir, site_list)
        summary = prepare_cache(scans, out, Protocol(keep=keep), **common)
    typer.echo("\n".join(summary.lines()))
    if synthetic:
        typer.echo("note       synthetic cohort: its numbers are not IXI numbers")


def main() -> None:
    """Entry point: bad input becomes one line on stderr and exit code 2 (usage errors too)."""
    try:
        app()
    except UserInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
