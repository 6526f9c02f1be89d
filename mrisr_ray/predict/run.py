"""`mrisr-ray predict`: a file or every NIfTI in a folder through one model.

Everything that can be checked before the network runs is (paths, outputs that exist, the
model); a file then goes in with `read_scan` and out with `write_atomically`, so nothing is ever
half-written. One file: bad input stops with one line. A folder: a bad file is reported on one
line and skipped, the others are written, and the result lists which failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mrisr_ray.errors import UserInputError
from mrisr_ray.predict import models
from mrisr_ray.predict.apply import Options, Prediction, Predictor
from mrisr_ray.predict.models import Model
from mrisr_ray.predict.scan import is_nifti, read_scan, write_atomically
from mrisr_ray.progress import Track, no_progress
from mrisr_ray.registry import MODELS
from mrisr_ray.tracking import DEFAULT_EXPERIMENT, Tracking
from mrisr_ray.workdir import ensure_folder


@dataclass(frozen=True)
class ModelChoice:
    """Exactly one of these names the model (the CLI's --study, --latest, --run, --checkpoint)."""

    study: str | None = None  # a study's best trial: its fold generators, averaged
    latest: str | None = None  # cpce | circle: the newest finished study of that model
    run: str | None = None  # a training run's best generator
    checkpoint: Path | None = None  # a generator file


def load_model(choice: ModelChoice, tracking: Tracking | None,
               experiment: str = DEFAULT_EXPERIMENT) -> Model:
    given = [name for name, value in vars(choice).items() if value is not None]
    if len(given) != 1:
        got = f" (got --{', --'.join(given)})" if given else ""
        raise UserInputError(f"give exactly one of --study NAME, --latest MODEL, --run RUN_ID, --checkpoint "
                             f"FILE{got}")
    if choice.checkpoint is not None:
        return models.from_checkpoint(choice.checkpoint)
    if tracking is None:
        raise UserInputError("--study, --latest and --run read an MLflow store: give its tracking")
    if choice.run is not None:
        return models.from_run(tracking, choice.run)
    if choice.latest is not None and choice.latest not in MODELS:
        raise UserInputError(f"--latest {choice.latest}: choose one of {', '.join(MODELS)}")
    return models.from_study(tracking, experiment, choice.study, choice.latest)


@dataclass
class PredictRequest:
    input: Path  # a NIfTI file or a folder of them
    output: Path  # a NIfTI file, or a folder (created) for a folder's outputs
    model: ModelChoice
    tracking: Tracking | None = None  # the MLflow store, for --study, --latest, --run
    experiment: str = DEFAULT_EXPERIMENT
    options: Options = field(default_factory=Options)
    overwrite: bool = False
    skip_existing: bool = False  # keep outputs that exist: finish a folder after an interruption


@dataclass(frozen=True)
class Row:
    """One input: written, or why not."""

    input: Path
    output: Path
    prediction: Prediction | None = None
    error: str | None = None


@dataclass
class PredictResult:
    model: Model
    keep: float
    rows: list[Row]
    folder: bool  # the input was a folder

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.error is not None]

    def lines(self) -> list[str]:
        """The summary table: one line per input."""
        scored = any(r.prediction and r.prediction.scores for r in self.rows)
        head = f"{'file':<32} {'status':<8} {'seconds':>7}"
        if scored:
            head += f"  {'LR PSNR':>8} {'LR SSIM':>7} {'SR PSNR':>8} {'SR SSIM':>7} {'slices':>6}"
        lines = [head]
        for row in self.rows:
            name = row.input.name if len(row.input.name) <= 32 else "…" + row.input.name[-31:]
            if row.prediction is None:
                lines.append(f"{name:<32} {'failed':<8} {'':>7}  {row.error}")
                continue
            line = f"{name:<32} {'written':<8} {row.prediction.seconds:>7.2f}"
            s = row.prediction.scores
            if s is not None:
                line += (f"  {s.lr.psnr:>8.2f} {s.lr.ssim:>7.4f} {s.sr.psnr:>8.2f} {s.sr.ssim:>7.4f} "
                         f"{s.slices:>6}")
            lines.append(line)
        return lines


def plan(request: PredictRequest) -> list[tuple[Path, Path]]:
    """(input, output) pairs, checked: inputs exist, outputs are not inputs and do not exist
    (unless --overwrite; --skip-existing leaves those out: outputs are written whole or not at
    all, so one that exists is finished)."""
    if request.overwrite and request.skip_existing:
        raise UserInputError("--overwrite replaces existing outputs, --skip-existing keeps them: give one")
    source, target = Path(request.input), Path(request.output)
    if not source.exists():
        raise UserInputError(f"--input {source}: not found")
    if source.is_dir():
        inputs = sorted(p for p in source.iterdir()
                        if p.is_file() and is_nifti(p) and not p.name.startswith("."))
        if not inputs:
            raise UserInputError(f"--input {source}: holds no .nii or .nii.gz file")
        if is_nifti(target) or (target.exists() and not target.is_dir()):
            raise UserInputError(f"--output {target}: a folder input needs an output folder")
        if target.resolve() == source.resolve():
            raise UserInputError(f"--output {target}: is the input folder (the outputs would replace the "
                                 "scans)")
        pairs = [(p, target / p.name) for p in inputs]
    else:
        if not is_nifti(source):
            raise UserInputError(f"--input {source}: not a .nii or .nii.gz file")
        output = target / source.name if target.is_dir() else target
        if not is_nifti(output):
            raise UserInputError(f"--output {target}: name a .nii or .nii.gz file (or an existing folder)")
        if output.resolve() == source.resolve():
            raise UserInputError(f"--output {output}: is the input (write the result elsewhere)")
        pairs = [(source, output)]
    existing = [out for _, out in pairs if out.exists()]
    if request.skip_existing:
        kept = set(existing)
        return [(scan, out) for scan, out in pairs if out not in kept]
    if existing and not request.overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserInputError(f"--output {existing[0]}{more}: exists (pass --overwrite to replace, or "
                             "--skip-existing to keep it)")
    return pairs


def predict(request: PredictRequest, say: Callable[[str], None] = lambda line: None,
            track: Track = no_progress) -> PredictResult:
    """Apply the chosen model to `request.input`; `say` gets what the console should show before
    the summary (the model, its training grid, warnings, skipped files)."""
    pairs = plan(request)
    model = load_model(request.model, request.tracking, request.experiment)
    if request.skip_existing:
        say(f"{len(pairs)} scan(s) to super-resolve; existing outputs kept (--skip-existing)")
    predictor = Predictor(model, request.options)
    say(f"model: {model.label}, {model.source}")
    if model.data is not None:
        say(f"trained on {model.data.grid()}")
        if predictor.keep != model.data.keep:
            say(f"warning: --keep {predictor.keep:g} is not the {model.data.keep:g} it was trained at: its "
                "inputs will look unlike its training data")
    elif request.options.keep is None:
        say(f"its training data are not recorded (a checkpoint's per-epoch file or an older run): keep "
            f"{predictor.keep:g} assumed (--keep to change)")
    folder = Path(request.input).is_dir()
    rows, warned = [], set()
    for number, (source, output) in enumerate(pairs, start=1):
        try:
            prediction = predictor(read_scan(source), track, f"[{number}/{len(pairs)}] {source.name}")
            ensure_folder(output.parent, "--output")
            write_atomically(prediction.image, output)
        except (UserInputError, OSError, RuntimeError, MemoryError) as exc:
            # One file's failure (bad input, a full disk, out of memory) skips that file only.
            if not folder:
                if isinstance(exc, OSError):
                    raise UserInputError(f"{output}: cannot write ({exc.strerror or exc})") from None
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            say(f"skipped: {reason}")
            rows.append(Row(input=source, output=output, error=reason))
            continue
        for warning in prediction.warnings:
            if warning not in warned:  # a model-wide warning once, a scan's own for each scan
                say(f"warning: {source.name}: {warning}")
                warned.add(warning)
        rows.append(Row(input=source, output=output, prediction=prediction))
    return PredictResult(model=model, keep=predictor.keep, rows=rows, folder=folder)
