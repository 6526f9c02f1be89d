"""`mrisr-ray demo`: the whole product on the embedded synthetic cohort, in minutes on a CPU —
prepare, a small tune of GAN-CPCE and of GAN-CIRCLE across folds, then the report."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.entities import Run

from mrisr_ray import runs
from mrisr_ray.config import load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.errors import Interrupted, UserInputError
from mrisr_ray.models.vgg import resolve_vgg_weights
from mrisr_ray.progress import Track, Watch, no_progress, no_watch
from mrisr_ray.registry import MODELS
from mrisr_ray.report.markdown import CONFIGURATIONS_HEADING
from mrisr_ray.report.run import ReportRequest, ReportResult, make_report
from mrisr_ray.resources import Resources
from mrisr_ray.tracking import DEFAULT_EXPERIMENT, Tracking
from mrisr_ray.tuning.study import StudyRequest, run_study
from mrisr_ray.workdir import Workdir

DEMO_STUDY = re.compile(rf"demo-({'|'.join(MODELS)})-(\d{{8}}-\d{{6}})")  # demo-<model>-<time stamp>
# Two trials at once, each a one-thread fold worker beside its 0.1-CPU trial driver, so that
# two cores overlap one trial's Ray start-up with the other's training.
DEMO_CONCURRENT, DEMO_CPUS_PER_WORKER = 2, 0.9


@dataclass
class DemoRequest:
    workdir: Workdir
    tracking: Tracking
    subjects: int = 20
    slices: int = 16
    test_fraction: float = 0.3  # 6 test subjects of 20
    folds: int = 2
    trials: int = 2
    seed: int = 0
    vgg_weights: str | None = None
    resume: bool = False  # continue the newest demo of this store: its finished studies are kept


@dataclass
class DemoResult:
    report: ReportResult
    seconds: dict[str, float]

    def lines(self, workdir: Workdir) -> list[str]:
        """What the console shows at the end: the report's results, the time of each step, and
        where to look next."""
        results = self.report.report.read_text().split(CONFIGURATIONS_HEADING)[0].strip()
        timing = ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
        return ["", results, "", f"time: {timing}", f"report: {self.report.report}",
                f"MLflow UI: mrisr-ray ui --workdir {workdir.root}  (it prints the address of the runs "
                "table)"]


def demo_cache(request: DemoRequest, track: Track) -> Path:
    """`<workdir>/data/demo`, rebuilt only when the demo's cohort parameters changed."""
    out = request.workdir.data / "demo"
    wanted = {"subjects": request.subjects, "seed": request.seed, "slices": request.slices}
    if (out / "manifest.json").is_file():
        cache = Cache.open(out)
        origin = {k: cache.manifest.origin.get("synthetic", {}).get(k) for k in wanted}
        if origin == wanted and len(cache.splits.folds) == request.folds:
            return out
    prepare_synthetic_cache(out, n_subjects=request.subjects, seed=request.seed, n_slices=request.slices,
                            n_folds=request.folds, test_fraction=request.test_fraction, overwrite=True,
                            track=track)
    return out


def vgg_weights(request: DemoRequest) -> str | None:
    """The ImageNet VGG-19 file when one is on this machine (resolved once, here), else None: the
    demo then trains without the perceptual term, the recorded `none` opt-out. Random VGG-19
    features (`random_vgg`) would cost 40% of a CPCE fold for a gradient 3.5e-5 of the L1 term's
    (docs/models.md)."""
    try:
        return str(resolve_vgg_weights(request.vgg_weights).resolve())
    except UserInputError:
        return None


def resumed(request: DemoRequest) -> tuple[DemoRequest, str]:
    """The newest demo of this store, continued as it was started: (its request, its time stamp).
    Its studies are demo-<model>-<stamp>, all with the same trials; its cohort and folds are its
    cache's, whatever `request` says (a rebuilt cohort would not be the one it tuned on)."""
    studies = demo_studies(request.tracking)
    if not studies:
        raise UserInputError(f"--resume: no demo to continue in {request.tracking.uri}; run `mrisr-ray demo`")
    newest = studies[0]
    cache = request.workdir.data / "demo"
    if not (cache / "manifest.json").is_file():
        raise UserInputError(f"--resume: the demo's cohort {cache} is gone; run `mrisr-ray demo` again")
    opened = Cache.open(cache)
    cohort = opened.manifest.origin.get("synthetic", {})
    return (replace(request, subjects=cohort["subjects"], seed=cohort["seed"], slices=cohort["slices"],
                    folds=len(opened.splits.folds), trials=int(newest.data.params["trials"])),
            DEMO_STUDY.fullmatch(newest.data.tags[runs.STUDY]).group(2))


class DemoInterrupted(Interrupted):
    """Ctrl-C during the demo; the message says how to continue it."""


def run_demo(request: DemoRequest, say: Callable[[str], None] = print,
             track: Track = no_progress, watch: Watch = no_watch) -> DemoResult:
    """Prepare, tune both models, report (`request.resume`: the newest demo, continued)."""
    if request.resume:
        request, stamp = resumed(request)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        return demo_steps(request, stamp, say, track, watch)
    except KeyboardInterrupt:
        if not demo_studies(request.tracking, stamp):  # --resume would find no demo, or an older one
            raise DemoInterrupted("demo interrupted before its first study; the same command continues "
                                  "it") from None
        store = request.tracking.uri
        where = f"--workdir {request.workdir.root}" + (
            "" if store == request.workdir.mlflow_uri else f" --tracking-uri {store}")
        hint = f"demo interrupted; continue it with: mrisr-ray demo --resume {where}"
        raise DemoInterrupted(hint) from None


def demo_studies(tracking: Tracking, stamp: str | None = None) -> list[Run]:
    """The demos' study runs in this store, newest first (`stamp`: only that demo's)."""
    if not tracking.exists():
        return []
    return [run for run in runs.study_runs(tracking, DEFAULT_EXPERIMENT)
            if (found := DEMO_STUDY.fullmatch(run.data.tags[runs.STUDY])) and stamp in (None, found.group(2))]


def demo_steps(request: DemoRequest, stamp: str, say: Callable[[str], None], track: Track,
               watch: Watch) -> DemoResult:
    if request.subjects < 10:
        raise UserInputError(f"--subjects must be at least 10 (test subjects and folds), got "
                             f"{request.subjects}")
    if request.trials < 1:
        raise UserInputError(f"--trials must be at least 1, got {request.trials}")
    seconds: dict[str, float] = {}
    start, steps = time.perf_counter(), len(MODELS) + 2
    say(f"[1/{steps}] synthetic cohort: {request.subjects} subjects ({request.test_fraction:.0%} "
        f"test), {request.folds} folds")
    cache = demo_cache(request, track)
    seconds["prepare"] = time.perf_counter() - start
    weights = vgg_weights(request)
    perceptual = "vgg" if weights else "none"
    if weights is None:
        say("      no VGG-19 ImageNet weights found: models with a perceptual loss train without it "
            "(loss.perceptual=none, recorded in MLflow and the report); see `mrisr-ray train "
            "--help` for --vgg-weights")
    studies = {}
    for step, (model, spec) in enumerate(MODELS.items(), start=2):
        name = studies[model] = f"demo-{model}-{stamp}"
        began = time.perf_counter()
        earlier = runs.study_runs(request.tracking, DEFAULT_EXPERIMENT, study=name) if request.resume else []
        if earlier and earlier[0].info.status == "FINISHED":
            say(f"[{step}/{steps}] tune {model}: study {name} finished before, kept")
            continue
        say(f"[{step}/{steps}] tune {model}: {request.trials} trials × {request.folds} folds"
            + (f" (continuing study {name})" if earlier else ""))
        overrides = [f"loss.perceptual={perceptual}"] if spec.perceptual else []
        config = load_config(model, defaults_dir("configs") / f"demo_{model}.yaml", overrides)
        run_study(StudyRequest(
            config=config, space_path=defaults_dir("search_spaces") / f"demo_{model}.yaml", cache=cache,
            workdir=request.workdir, tracking=request.tracking, trials=request.trials,
            folds=request.folds, name=name, seed=request.seed, resume=bool(earlier),
            vgg_weights=weights, concurrent=DEMO_CONCURRENT,
            resources=Resources(cpus_per_worker=DEMO_CPUS_PER_WORKER)), watch=watch)
        seconds[f"tune_{model}"] = time.perf_counter() - began
    say(f"[{steps}/{steps}] report on the test subjects")
    began = time.perf_counter()
    report = make_report(ReportRequest(cache=cache, workdir=request.workdir, tracking=request.tracking,
                                       choices=studies), track=track, watch=watch)
    seconds["report"] = time.perf_counter() - began
    seconds["total"] = time.perf_counter() - start
    return DemoResult(report=report, seconds=seconds)
