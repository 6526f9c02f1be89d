"""The `mrisr-ray` command line: parse, validate, call the library. Heavy imports stay inside
the commands so that `--help` is fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mrisr_ray.errors import RunFailed, UserInputError
from mrisr_ray.registry import MODELS

MODEL_CHOICES = " or ".join(MODELS) + "."
MODEL_METAVAR = "|".join(MODELS)

APP_HELP = (
    "GAN super-resolution for brain MRI (GAN-CPCE, GAN-CIRCLE) with Ray, Optuna and MLflow.\n\n"
    "Order of commands: prepare (a dataset cache) → train (one model) or tune (a study) → report "
    "(table and figures on the test subjects) → predict (your own scans); ui compares runs in MLflow.\n\n"
    "Example: mrisr-ray demo   (all of it on a small synthetic cohort)"
)


def without_flag_types(params: list) -> list:
    """Flags show no type placeholder in help (`--dry-run`, not `--dry-run <bool>`); --help too."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(typer.core.TyperCommand):
    def get_params(self, ctx):
        return without_flag_types(super().get_params(ctx))


class Group(typer.core.TyperGroup):
    def get_params(self, ctx):
        return without_flag_types(super().get_params(ctx))


app = typer.Typer(
    cls=Group,
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version_string() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"mrisr-ray {version('mrisr-ray')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "mrisr-ray (version unknown: not installed)"


def show_version(value: bool) -> None:
    if value:
        typer.echo(version_string())
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=show_version, is_eager=True)] = False,
) -> None:
    """GAN super-resolution for brain MRI (GAN-CPCE, GAN-CIRCLE) with Ray, Optuna and MLflow."""


WorkdirOption = Annotated[
    Path | None,
    typer.Option("--workdir", help="Work directory for runs (env MRISR_RAY_WORKDIR, default ./mrisr-work)."),
]


def track(items, description: str):
    """Progress of a loop of a command without a session log (prepare, predict): a rich bar on a
    terminal, plain lines otherwise (console.py)."""
    from mrisr_ray.console import Console, shows_live

    return Console(out=sys.stdout, err=sys.stderr, live=shows_live(sys.stdout, verbose=False)).track(
        items, description)


@app.command(cls=Command, epilog="Example: mrisr-ray prepare --data-dir IXI-T2/ --sites Guys")
def prepare(
    data_dir: Annotated[Path | None, typer.Option(help="Folder of IXI T2 NIfTI files.")] = None,
    out: Annotated[Path | None, typer.Option(help="Cache folder (default <workdir>/data/<name>).")] = None,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="Generate the embedded synthetic cohort instead.")] = False,
    subjects: Annotated[int, typer.Option(help="Synthetic cohort size.")] = 20,
    sites: Annotated[str, typer.Option(help="all, or a comma list of IXI sites: Guys,HH,IOP.")] = "all",
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    test_fraction: Annotated[float, typer.Option(help="Share of subjects held out for test.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the splits (and of the synthetic cohort).")] = 0,
    keep: Annotated[float, typer.Option(help="Fraction of each k-space axis kept for LR.")] = 0.5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    workdir: WorkdirOption = None,
) -> None:
    """Prepare a dataset cache (slices, manifest, subject-level splits) from IXI T2 or synthetic data."""
    from mrisr_ray.data.cache import PrepareInterrupted, Protocol, prepare_cache
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
    if site_list == []:
        raise UserInputError(f"--sites {sites!r}: name at least one site (Guys, HH, IOP), or all")
    common = {"n_folds": folds, "test_fraction": test_fraction, "seed": seed, "overwrite": overwrite,
              "track": track}
    try:
        if synthetic:
            if keep != 0.5:
                raise UserInputError("--keep applies to --data-dir; the synthetic cohort uses 0.5")
            summary = prepare_synthetic_cache(out, n_subjects=subjects, **common)
        else:
            scans = discover_scans(data_dir, site_list)
            summary = prepare_cache(scans, out, Protocol(keep=keep), **common)
    except PrepareInterrupted as exc:  # no session here (console.py) to say it
        typer.echo(str(exc), err=True)
        raise typer.Exit(130) from None
    typer.echo("\n".join(summary.lines()))
    if synthetic:
        typer.echo("note       synthetic cohort: its numbers are not IXI numbers")


TrackingOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI (default sqlite:///<workdir>/mlflow.db)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set train.lr=2e-4 (repeatable)."),
]
EpochsOption = Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=E.")]
AddressOption = Annotated[str | None, typer.Option(help="Join a running Ray cluster (default: local).")]
StorageOption = Annotated[str | None, typer.Option(
    help="Folder for Ray's checkpoints and Tune results; on a cluster one every node mounts "
    "(default <workdir>/ray).")]
WorkerResourceOption = Annotated[str | None, typer.Option(
    metavar="NAME", help="Give each worker one unit of this custom Ray resource (placed only on nodes "
    "started with --resources '{\"NAME\": N}').")]
VerboseOption = Annotated[bool, typer.Option(
    "--verbose", help="Also show Ray's, Tune's and the workers' own output (always in <workdir>/logs/).")]


def config_overrides(set_: list[str] | None, epochs: int | None, seed: int | None = None) -> list[str]:
    """The `--set` values, with `--epochs E` and train's `--seed S` as more."""
    shortcuts = {"train.epochs": epochs, "train.seed": seed}
    return list(set_ or []) + [f"{key}={value}" for key, value in shortcuts.items() if value is not None]


@app.command(cls=Command, epilog="Example: mrisr-ray train --model cpce --data mrisr-work/data/synthetic "
             "--workers 1 --device cuda --vgg-weights vgg19-dcbb9e9d.pth")
def train(
    model: Annotated[str | None, typer.Option(metavar=MODEL_METAVAR, help=MODEL_CHOICES)] = None,
    data: Annotated[Path | None, typer.Option(help="Prepared cache (mrisr-ray prepare).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config YAML (default configs/<model>.yaml).")] = None,
    fold: Annotated[int, typer.Option(help="0-based fold; validates on its val subjects.")] = 0,
    all_train: Annotated[bool, typer.Option(
        "--all-train", help="Train on every non-test subject, no validation.")] = False,
    workers: Annotated[int, typer.Option(help="DDP workers (one GPU each on CUDA).")] = 1,
    seed: Annotated[int | None, typer.Option(help="Shortcut for --set train.seed=S.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    epochs: EpochsOption = None,
    vgg_weights: Annotated[str | None, typer.Option(help="VGG-19 weights file (or 'download').")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "mrisr-ray",
    resume: Annotated[str | None, typer.Option(
        help="MLflow run id to continue from its last checkpoint (its own config; give the --data it "
        "trained on; tune's --resume continues a study instead).")] = None,
    max_failures: Annotated[int, typer.Option(help="Worker-group restarts from the last checkpoint.")] = 1,
    address: AddressOption = None,
    storage_path: StorageOption = None,
    worker_resource: WorkerResourceOption = None,
    set_: SetOption = None,
    workdir: WorkdirOption = None,
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train one GAN with Ray Train (DDP), paper schedule, full-state checkpoints, MLflow logging."""
    from mrisr_ray.config import load_config
    from mrisr_ray.console import session
    from mrisr_ray.resources import Resources
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.train.run import TrainRequest
    from mrisr_ray.train.run import train as run_training
    from mrisr_ray.workdir import resolve_workdir

    if resume is None and model is None and config is None:
        raise UserInputError("give --model cpce|circle (or --config FILE, or --resume RUN_ID)")
    if data is None:
        raise UserInputError("give --data CACHE (a folder made by `mrisr-ray prepare`)")
    overrides = config_overrides(set_, epochs, seed)
    if resume is not None and overrides and model is None and config is None:
        raise UserInputError(f"--resume {resume} continues the run's own configuration; "
                             "--set/--epochs/--seed cannot change it")
    # A resumed run keeps its own config: one given with --resume must be the same (checked).
    given = resume is None or model is not None or config is not None
    run_config = load_config(model, config, overrides) if given else None
    wd = resolve_workdir(workdir, storage_path)
    with session("train", wd, verbose) as console:
        result = run_training(TrainRequest(
            config=run_config, cache=data, workdir=wd, tracking=Tracking.for_workdir(wd, tracking_uri),
            fold=None if all_train else fold,
            resources=Resources(workers=workers, worker_resource=worker_resource), device=device,
            experiment=experiment, vgg_weights=vgg_weights, resume_run_id=resume,
            max_failures=max_failures, address=address), watch=console.watch)
        scores = "" if all_train else \
            f", best val PSNR {result.best_psnr:.2f} dB / SSIM {result.best_ssim:.4f}"
        console.say(f"run {result.run_id}: best epoch {result.best_epoch}{scores}")
        console.say(f"best generator: {result.generator}")
        console.say(f"compare runs: mrisr-ray ui --workdir {wd.root}")


@app.command(cls=Command, epilog="Example: mrisr-ray tune --model circle --data mrisr-work/data/synthetic "
             "--trials 20 --folds 5 --gpus-per-worker 1")
def tune(
    model: Annotated[str, typer.Option(metavar=MODEL_METAVAR, help=MODEL_CHOICES)],
    data: Annotated[Path, typer.Option(help="Prepared cache (mrisr-ray prepare).")],
    space: Annotated[Path | None, typer.Option(
        help="Search space YAML (default search_spaces/<model>.yaml).")] = None,
    config: Annotated[Path | None, typer.Option(help="Base config (default configs/<model>.yaml).")] = None,
    trials: Annotated[int, typer.Option(help="Configurations to try (trial 0 = the base config).")] = 20,
    folds: Annotated[int | None, typer.Option(
        help="Use the first K folds of splits.json (default: all of the cache's folds).")] = None,
    concurrent: Annotated[int, typer.Option(help="Trials running at the same time.")] = 1,
    workers: Annotated[int, typer.Option(
        "--workers", "--workers-per-trial",
        help="DDP workers of each fold training, as train's --workers.")] = 1,
    gpus_per_worker: Annotated[float, typer.Option(
        help="GPUs per worker; 0 trains on CPUs, <1 shares.")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs per worker.")] = 1.0,
    epochs: EpochsOption = None,
    metric: Annotated[str, typer.Option(help="psnr or ssim (mean over folds).")] = "psnr",
    name: Annotated[str | None, typer.Option(help="Study name (default <model>-<time>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the study --name (train's --resume "
                                         "takes a run id instead).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit.")] = False,
    max_failures: Annotated[int, typer.Option(
        help="Restarts of each fold from its last checkpoint (e.g. spot nodes reclaimed).")] = 1,
    address: AddressOption = None,
    storage_path: StorageOption = None,
    worker_resource: WorkerResourceOption = None,
    seed: Annotated[int, typer.Option(
        help="Seed of Optuna's sampler (each training's own seed is the config's train.seed).")] = 0,
    vgg_weights: Annotated[str | None, typer.Option(help="VGG-19 weights file (CPCE).")] = None,
    set_: SetOption = None,
    workdir: WorkdirOption = None,
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Search loss weights and schedules with Ray Tune + Optuna, scored across CV folds."""
    from mrisr_ray.config import load_config
    from mrisr_ray.console import session
    from mrisr_ray.data.cache import Cache
    from mrisr_ray.resources import Resources
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.tuning.plan import StudyRequest, make_plan
    from mrisr_ray.tuning.space import default_space_path
    from mrisr_ray.tuning.study import run_study
    from mrisr_ray.tuning.tables import summary_lines
    from mrisr_ray.workdir import resolve_workdir

    if resume and not name:
        raise UserInputError("--resume needs --name STUDY")
    overrides = config_overrides(set_, epochs)
    base = load_config(model, config, overrides)
    wd = resolve_workdir(workdir, storage_path)
    request = StudyRequest(
        config=base, space_path=space or default_space_path(base.model), cache=data, workdir=wd,
        tracking=Tracking.for_workdir(wd, tracking_uri), trials=trials, folds=folds,
        concurrent=concurrent, resources=Resources(workers=workers, cpus_per_worker=cpus_per_worker,
                                                   gpus_per_worker=gpus_per_worker,
                                                   worker_resource=worker_resource),
        metric=metric, name=name, resume=resume, address=address, seed=seed, vgg_weights=vgg_weights,
        max_failures=max_failures)
    if dry_run:
        plan = make_plan(request, Cache.open(data))
        typer.echo("\n".join(plan.lines()))
        return
    with session("tune", wd, verbose) as console:
        result = run_study(request, watch=console.watch)
        store = f"--workdir {wd.root}" + (f" --tracking-uri {tracking_uri}" if tracking_uri else "")
        for line in summary_lines(result, base.model, metric, data, store):
            console.say(line)


@app.command(cls=Command,
             epilog="Example: mrisr-ray report --data mrisr-work/data/synthetic --cpce cpce-20261126-101500")
def report(
    data: Annotated[Path, typer.Option(help="Prepared cache whose test subjects are scored.")],
    cpce: Annotated[str | None, typer.Option(help="CPCE study name (default: the latest), or a config "
                                             "YAML with --retrain.")] = None,
    circle: Annotated[str | None, typer.Option(help="CIRCLE study name or config YAML.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default <workdir>/reports).")] = None,
    retrain: Annotated[bool, typer.Option(
        "--retrain/--use-fold-models",
        help="Retrain the best configuration on all non-test subjects (an earlier report's finished "
        "retraining of it, same data and code, is reused; one Ctrl-C stopped is continued), or "
        "(default) ensemble the best trial's fold models.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (for --retrain).")] = "auto",
    vgg_weights: Annotated[str | None, typer.Option(help="VGG-19 weights (CPCE --retrain).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "mrisr-ray",
    workdir: WorkdirOption = None,
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Regenerate the SSIM/PSNR table and figures for the best CPCE and CIRCLE on the test subjects."""
    from mrisr_ray.console import session
    from mrisr_ray.inference import retain_freed_memory
    from mrisr_ray.report.evaluate import worse_than_input
    from mrisr_ray.report.run import ReportRequest, make_report
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.workdir import resolve_workdir

    wd = resolve_workdir(workdir)
    retain_freed_memory()  # this process then only runs generators (inference.py)
    with session("report", wd, verbose) as console:
        result = make_report(ReportRequest(
            cache=data, workdir=wd, tracking=Tracking.for_workdir(wd, tracking_uri),
            choices={"cpce": cpce, "circle": circle}, out=out, retrain=retrain, experiment=experiment,
            vgg_weights=vgg_weights, device=device), track=console.track, watch=console.watch)
        for line in worse_than_input(result.evaluation):
            console.say(f"warning: {line}")
        console.say(f"report: {result.report}")
        console.say(f"per-subject metrics: {result.metrics_csv}")


PREDICT_HELP = (
    "Super-resolve your own scans with a tuned or trained model (nnU-Net-style predict).\n\n"
    "A model expects what it was trained on: a volume on its training grid whose k-space outside the kept "
    "block is empty, the zero-filled LR image. Models trained on IXI T2 or on the synthetic cohort know "
    "256×256 axial slices of 0.94 mm at keep 0.5 (the central 25% of k-space); the command prints the "
    "chosen model's own grid. Pass --degrade for a full-resolution scan, --zero-fill for a genuinely "
    "low-resolution one.\n\n"
    "Output: the input's orientation, affine and shape (finer in-plane with --zero-fill), float32, in the "
    "input's intensity range. Details: docs/predict.md."
)


@app.command(cls=Command, help=PREDICT_HELP,
             epilog="Example: mrisr-ray predict --input scans/ --output sr/ --latest cpce --degrade")
def predict(
    input_: Annotated[Path, typer.Option("--input", help="A .nii/.nii.gz scan, or a folder of them.")],
    output: Annotated[Path, typer.Option(help="Output .nii/.nii.gz (or a folder, for a folder input).")],
    study: Annotated[str | None, typer.Option(
        help="A study's best trial: its K fold generators, averaged.")] = None,
    latest: Annotated[str | None, typer.Option(
        metavar=MODEL_METAVAR, help="The newest finished study of this model: " + MODEL_CHOICES)] = None,
    run: Annotated[str | None, typer.Option(help="A training run's best generator (MLflow run id).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        help="A generator file (best_generator.pt, or a checkpoint's generator.pt).")] = None,
    degrade: Annotated[bool, typer.Option(
        "--degrade", help="The input is HR: degrade it as in training and print PSNR/SSIM of LR and SR "
        "against it.")] = False,
    zero_fill: Annotated[bool, typer.Option(
        "--zero-fill", help="The input is a low-resolution scan: zero-pad its k-space onto the training "
        "grid first (128×128 → 256×256 at keep 0.5).")] = False,
    dc: Annotated[bool, typer.Option("--dc", help="k-space data consistency on the output (+DC).")] = False,
    keep: Annotated[float | None, typer.Option(
        help="Fraction of each k-space axis kept (default: the model's training data's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int | None, typer.Option(
        help="Slices per forward (default: 1 per CPU thread, 16 on a GPU).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Keep existing outputs: finish a folder after an interruption.")] = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "mrisr-ray",
    workdir: WorkdirOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Super-resolve your own scans with a tuned or trained model."""
    from mrisr_ray.inference import retain_freed_memory
    from mrisr_ray.predict import ModelChoice, Options, PredictRequest
    from mrisr_ray.predict import predict as run_predict
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.workdir import resolve_workdir

    retain_freed_memory()  # this process only runs generators (inference.py)
    choice = ModelChoice(study=study, latest=latest, run=run, checkpoint=checkpoint)
    store = None if checkpoint is not None else Tracking.for_workdir(resolve_workdir(workdir), tracking_uri)
    result = run_predict(PredictRequest(
        input=input_, output=output, model=choice, tracking=store, experiment=experiment,
        options=Options(degrade=degrade, zero_fill=zero_fill, dc=dc, keep=keep, device=device,
                        batch_size=batch_size), overwrite=overwrite, skip_existing=skip_existing),
        say=typer.echo, track=track)
    typer.echo("\n".join(result.lines()))
    written = [row.output for row in result.rows if row.error is None]
    if written:
        typer.echo(f"written: {output if result.folder else written[0]}")
    if result.failed:
        raise RunFailed(f"{len(result.failed)} of {len(result.rows)} scans failed (listed above); the "
                        "others were written")


@app.command(cls=Command, epilog="Example: mrisr-ray demo --workdir mrisr-work")
def demo(
    ctx: typer.Context,
    subjects: Annotated[int, typer.Option(help="Synthetic subjects (30% are test subjects).")] = 20,
    trials: Annotated[int, typer.Option(help="Trials per model.")] = 2,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic cohort, its splits and the studies.")] = 0,
    vgg_weights: Annotated[str | None, typer.Option(
        help="VGG-19 weights for CPCE, if you have them.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the newest (interrupted) demo of this work directory, with its own "
        "cohort, folds, trials and seed.")] = False,
    workdir: WorkdirOption = None,
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run everything on the embedded synthetic cohort: prepare, tune both models, report."""
    from mrisr_ray.console import session
    from mrisr_ray.demo import DemoRequest, run_demo
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.workdir import resolve_workdir

    # By name: the enum is Typer's own copy of Click's (see CLICK_ERROR), not importable from it.
    given = [f"--{name}" for name in ("subjects", "trials", "folds", "seed")
             if ctx.get_parameter_source(name).name == "COMMANDLINE"]
    if resume and given:
        raise UserInputError(f"--resume continues the demo with its own cohort, folds, trials and seed; "
                             f"{'/'.join(given)} cannot change them")
    wd = resolve_workdir(workdir)
    with session("demo", wd, verbose) as console:
        result = run_demo(DemoRequest(workdir=wd, tracking=Tracking.for_workdir(wd, tracking_uri),
                                      subjects=subjects, trials=trials, folds=folds, seed=seed,
                                      vgg_weights=vgg_weights, resume=resume),
                          say=console.say, track=console.track, watch=console.watch)
        for line in result.lines(wd):
            console.say(line)


@app.command(cls=Command, epilog="Example: mrisr-ray ui --port 5000")
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    experiment: Annotated[str, typer.Option(help="MLflow experiment whose runs table opens.")] = "mrisr-ray",
    workdir: WorkdirOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Start the MLflow UI on 127.0.0.1 on this work directory's store."""
    import os

    from mrisr_ray import runs
    from mrisr_ray.tracking import UI_ENVIRONMENT, Tracking, ui_command
    from mrisr_ray.workdir import resolve_workdir

    tracking = Tracking.for_workdir(resolve_workdir(workdir), tracking_uri)
    command = ui_command(tracking, port)
    for name, value in UI_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    address = tracking.runs_url(port, experiment, runs.TABLE_COLUMNS)
    typer.echo(f"MLflow UI for {tracking.uri} (Ctrl-C stops it): open {address}")
    sys.stdout.flush()
    # Become the MLflow server, so that Ctrl-C and kill reach it and its workers directly.
    os.execv(sys.executable, command)


# Click's errors meant for the user (usage errors among them). Typer now ships its own copy of
# Click and re-exports only some of its classes: the base class is found from one it re-exports.
CLICK_ERROR = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")


def usage_line(exc: Exception) -> str:
    """Click's message on one line, with the help command that its usage box used to show."""
    text = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    return f"{text} (try '{ctx.command_path} --help')" if ctx is not None else text


def main() -> None:
    """Entry point: bad input becomes one line on stderr and exit code 2 (usage errors too), a
    failed run one line and exit code 1. Click runs with standalone_mode=False, so that its usage
    errors come here instead of being drawn as a box."""
    try:
        code = app(standalone_mode=False)  # the exit code of a typer.Exit (or Ctrl-C: 130)
    except CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `mrisr-ray` alone: the help, on stdout
            if exc.format_message().strip():  # rich printed it already, plain Click did not
                typer.echo(exc.format_message())
        else:
            typer.echo(f"error: {usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except UserInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except RunFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
