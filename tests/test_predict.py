"""`mrisr-ray predict` (issue 13): whole scans through tiny generators, in and out of their own
orientation; the generator files and the MLflow sources (a real SQLite store whose runs are made
with the schema functions); bad input; folders; the fast slice runner against plain G(x)."""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import blob_volume, write_nifti
from nibabel.orientations import axcodes2ornt, ornt_transform

from mrisr_ray import runs, tracking
from mrisr_ray.cli import main
from mrisr_ray.config import Config, load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import UserInputError
from mrisr_ray.inference import SliceRunner
from mrisr_ray.predict import ModelChoice, Options, PredictRequest, apply, predict
from mrisr_ray.registry import model_spec
from mrisr_ray.runs import RunKind, TrialRef
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import GeneratorFile, TrainingData, read_generator, write_generator
from mrisr_ray.workdir import Workdir

TINY_CPCE = ["cpce.width=8", "loss.perceptual=none"]
IXI_GRID = TrainingData(keep=0.5, slice_shape=(256, 256), spacing=(0.9375, 0.9375), origin="ixi")
EXPERIMENT = "predict"


def tiny_config(model: str = "cpce", *extra: str) -> Config:
    overrides = TINY_CPCE if model == "cpce" else ["circle.first_width=16", "circle.min_width=8",
                                                   "circle.blocks=4"]
    return load_config(model, overrides=[*overrides, *extra])


def random_weights(config: Config, seed: int) -> dict[str, torch.Tensor]:
    """A generator that is not the identity (untrained residual generators are)."""
    torch.manual_seed(seed)
    net = model_spec(config.model).generator(config)
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.05)
    return net.state_dict()


def generator_file(path: Path, seed: int | None = 0, data: TrainingData | None = IXI_GRID,
                   config: Config | None = None) -> Path:
    """A tiny CPCE generator file: random weights, or (seed None) the untrained identity."""
    config = config or tiny_config()
    state = model_spec(config.model).generator(config).state_dict() if seed is None \
        else random_weights(config, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_generator(path, GeneratorFile(config=config, state_dict=state, data=data))
    return path


def write_oriented(path: Path, ras: np.ndarray, storage: str, zooms=(0.9375, 0.9375, 2.0)) -> Path:
    """`ras` (x, y, z in RAS order) stored with its axes ordered and flipped as `storage` says
    (e.g. "PSL"): the same physical volume, another voxel order."""
    image = nib.Nifti1Image(ras, np.diag([*zooms, 1.0]))
    stored = image.as_reoriented(ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(storage))))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(stored, str(path))
    return path


def smooth_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Positive, smooth, with structure at every position (so orientation errors show)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=shape)
    for axis in (0, 1):
        x = (x + np.roll(x, 1, axis) + np.roll(x, -1, axis)) / 3
    return (100 + 400 * x).astype(np.float32)


def run(tmp_path: Path, source: Path, checkpoint: Path, name: str = "out.nii.gz",
        **options) -> tuple[Path, list[str]]:
    said: list[str] = []
    out = tmp_path / name
    predict(PredictRequest(input=source, output=out, model=ModelChoice(checkpoint=checkpoint),
                           options=Options(**options)), say=said.append)
    return out, said


def assert_round_trip(source: Path, output: Path) -> None:
    """Same affine, shape, orientation; float32 without scaling; finite; the input's range."""
    a, b = nib.load(str(source)), nib.load(str(output))
    assert b.shape == a.shape and np.array_equal(b.affine, a.affine)
    assert nib.aff2axcodes(b.affine) == nib.aff2axcodes(a.affine)
    assert b.get_data_dtype() == np.float32 and np.isnan(b.header["scl_slope"])
    data, original = np.asarray(b.dataobj), np.asarray(a.dataobj, dtype=np.float32)
    assert np.isfinite(data).all()
    assert original.min() - 1e-3 <= data.min() and data.max() <= original.max() + 1e-3
    assert data.max() - data.min() > 0.5 * (original.max() - original.min())


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The real entry point in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mrisr-ray", "predict", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# Whole scans, orientations, grids.


def test_real_subject_round_trip(real_t2, tmp_path):
    checkpoint = generator_file(tmp_path / "g.pt", data=TrainingData(0.5, (256, 256), (0.9375, 0.9375),
                                                                     "synthetic"))
    out, said = run(tmp_path, real_t2, checkpoint)
    assert_round_trip(real_t2, out)
    np.testing.assert_allclose(nib.as_closest_canonical(nib.load(str(out))).get_fdata(),
                               by_hand(real_t2, [read_generator(checkpoint).state_dict]), rtol=0, atol=0.1)
    assert any("trained on the synthetic cohort" in line for line in said)  # a real scan
    assert any("for a full-resolution scan pass --degrade" in line for line in said)  # an HR input


def test_synthetic_scan_round_trip_and_the_identity_reproduces_it(tmp_path):
    source = write_nifti(tmp_path / "scan.nii.gz", blob_volume(3, (64, 64, 5)))
    out, _ = run(tmp_path, source, generator_file(tmp_path / "g.pt"))
    assert_round_trip(source, out)
    # An untrained residual CPCE is the identity: the scan comes back as it was, +DC as well.
    source = write_nifti(tmp_path / "smooth.nii.gz", smooth_volume((48, 48, 3)))  # minimum ≈ 100
    identity = generator_file(tmp_path / "identity.pt", seed=None)
    for dc in (False, True):
        out, _ = run(tmp_path, source, identity, f"identity{dc}.nii.gz", dc=dc)
        np.testing.assert_allclose(nib.load(str(out)).get_fdata(), nib.load(str(source)).get_fdata(),
                                   rtol=1e-4)


@pytest.mark.parametrize("shape", [(224, 224, 3), (225, 97, 3)])
def test_any_orientation_gives_the_same_physical_result(tmp_path, shape):
    """The network sees canonical axial slices whatever the file's voxel order: one volume stored
    RAS and stored PSL (224×224, and an odd size) gives one result, back in each file's order."""
    checkpoint = generator_file(tmp_path / "g.pt")
    volume = smooth_volume(shape)
    results = []
    for storage in ("RAS", "PSL"):
        source = write_oriented(tmp_path / f"{storage}.nii.gz", volume, storage)
        out, _ = run(tmp_path, source, checkpoint, f"{storage}_sr.nii.gz")
        assert_round_trip(source, out)
        results.append(nib.as_closest_canonical(nib.load(str(out))))
    np.testing.assert_array_equal(results[0].affine, results[1].affine)
    np.testing.assert_allclose(results[0].get_fdata(), results[1].get_fdata(), rtol=0, atol=1e-3)
    assert results[0].get_fdata().std() > 1.0  # not a constant that any orientation would match


def test_a_4d_volume_with_one_volume_is_squeezed_and_keeps_its_shape(tmp_path):
    source = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(smooth_volume((32, 32, 3))[..., None], np.eye(4)), str(source))
    out, _ = run(tmp_path, source, generator_file(tmp_path / "g.pt"))
    assert_round_trip(source, out)


def test_zero_fill_puts_a_low_resolution_scan_on_the_training_grid(tmp_path):
    """128×128 → 256×256 at keep 0.5, in-plane voxels halved; every input voxel reappears at its
    own world position (the identity generator), also through a flipped axis (LAS)."""
    coarse = smooth_volume((128, 128, 3))
    source = write_oriented(tmp_path / "lr.nii.gz", coarse, "LAS", zooms=(1.875, 1.875, 2.0))
    out, _ = run(tmp_path, source, generator_file(tmp_path / "identity.pt", seed=None), zero_fill=True)
    a, b = nib.load(str(source)), nib.load(str(out))
    assert b.shape == (256, 256, 3)
    np.testing.assert_allclose(b.header.get_zooms(), (0.9375, 0.9375, 2.0), rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.diag(b.affine))[:3], (0.9375, 0.9375, 2.0))
    ijk = np.stack(np.meshgrid(*map(np.arange, a.shape), indexing="ij"), -1).reshape(-1, 3)
    world = nib.affines.apply_affine(a.affine, ijk)
    fine = nib.affines.apply_affine(np.linalg.inv(b.affine), world)
    assert np.abs(fine - fine.round()).max() < 1e-6
    index = tuple(fine.round().astype(int).T)
    np.testing.assert_allclose(np.asarray(b.dataobj)[index], np.asarray(a.dataobj)[tuple(ijk.T)],
                               rtol=1e-4)


def test_degrade_prints_the_lr_psnr_of_an_independent_numpy_computation(tmp_path, monkeypatch, capsys):
    volume = blob_volume(5, (64, 64, 6)).astype(np.float32)
    volume[:, :, :2] *= 0.02  # two slices the foreground rule leaves out
    source = write_oriented(tmp_path / "hr.nii.gz", volume, "LPS")
    code, out, err = cli(monkeypatch, capsys, "--input", source, "--output", tmp_path / "sr.nii.gz",
                         "--checkpoint", generator_file(tmp_path / "g.pt"), "--degrade")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("hr.nii.gz"))
    printed_lr_psnr = float(row.split()[3])

    # docs/metrics.md by hand: canonical slices, min-max, the foreground rule, numpy's FFT.
    hr = nib.as_closest_canonical(nib.load(str(source))).get_fdata()
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    kept = [k for k in range(hr.shape[2]) if (hr[:, :, k] > 0.05).mean() >= 0.10]
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True  # the central 32×32 block of the centred spectrum
    mse = []
    for k in kept:
        spectrum = np.fft.fftshift(np.fft.fft2(hr[:, :, k]))
        lr = np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum * mask)))
        mse.append(((np.clip(lr, 0, 1) - hr[:, :, k]) ** 2).mean())
    assert printed_lr_psnr == pytest.approx(10 * np.log10(1 / np.mean(mse)), abs=0.006)
    assert row.split()[-1] == str(len(kept)) == "4"


def test_help_says_at_which_resolution_models_were_trained(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "--help")
    assert code == 0 and "256×256 axial slices of 0.94 mm at keep 0.5" in " ".join(out.split())


# Generator files.


def test_generator_files_describe_their_network(tmp_path):
    """A residual and a non-residual CPCE have the same weights: only the file's config tells."""
    plain = tiny_config("cpce", "cpce.residual=false")
    path = generator_file(tmp_path / "plain.pt", config=plain, data=None)
    read = read_generator(path)
    assert read.config == plain and read.data is None and read.module().residual is False
    with_data = read_generator(generator_file(tmp_path / "ixi.pt"))
    assert with_data.data == IXI_GRID and with_data.module().residual is True


class Payload:
    """A pickle that creates `marker` when it is unpickled in full."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("content", ["foreign pickle", "plain dict", "bare state_dict", "not torch",
                                     "wrong model", "keep as text", "keep out of range"])
def test_anything_but_a_generator_file_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "g.pt"
    config = tiny_config()
    marker = tmp_path / "unpickled"
    if content == "foreign pickle":
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    elif content == "plain dict":
        torch.save({"weights": torch.zeros(2)}, path)
    elif content == "bare state_dict":
        torch.save(random_weights(config, 0), path)
    elif content == "not torch":
        path.write_bytes(b"\x00garbage" * 10)
    elif content.startswith("keep"):
        payload = torch.load(generator_file(path), weights_only=True)
        payload["data"]["keep"] = "0.5" if content == "keep as text" else 2.0
        torch.save(payload, path)
    else:
        torch.save({"model": "circle", "config": {"model": "cpce"}, "state_dict": {}}, path)
    with pytest.raises(UserInputError, match=r"g\.pt: (not a mrisr-ray generator file|its)") as caught:
        read_generator(path)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_cli_refuses_a_foreign_pickle_with_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps(Payload(tmp_path / "unpickled"), protocol=2))
    source = write_nifti(tmp_path / "scan.nii.gz", blob_volume(0, (32, 32, 3)))
    code, _, err = cli(monkeypatch, capsys, "--input", source, "--output", tmp_path / "out.nii.gz",
                       "--checkpoint", bad)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "not a mrisr-ray generator file (holds more than tensors and plain data, so it was not " \
        "unpickled" in err
    assert not (tmp_path / "out.nii.gz").exists() and not (tmp_path / "unpickled").exists()


# Bad input and folders.


@pytest.mark.parametrize("case", ["two volumes", "nan", "unreadable", "singular affine", "complex",
                                  "output is input", "output exists"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    checkpoint = generator_file(tmp_path / "g.pt")
    source = tmp_path / "in" / "scan.nii.gz"
    data = smooth_volume((32, 32, 3))
    output = tmp_path / "out" / "scan.nii.gz"
    if case == "two volumes":
        write_nifti(source, np.stack([data, data], -1))
    elif case == "nan":
        data[3, 3, 1] = np.nan
        write_nifti(source, data)
    elif case == "unreadable":
        source.parent.mkdir()
        source.write_bytes(b"not gzip at all")
    elif case in ("singular affine", "complex"):
        source.parent.mkdir()
        image = nib.Nifti1Image(data.astype(np.complex64) if case == "complex" else data, None)
        if case == "singular affine":  # one axis maps to nothing
            image.header.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)
        nib.save(image, source)
    else:
        write_nifti(source, data)
        if case == "output is input":
            output = source
        else:
            write_nifti(output, data)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.nii.gz")}
    with pytest.raises(UserInputError) as caught:
        predict(PredictRequest(input=source, output=output, model=ModelChoice(checkpoint=checkpoint)))
    assert "\n" not in str(caught.value)
    expected = {"singular affine": "its affine gives the axes no orientation",
                "complex": "complex-valued voxels; give a magnitude image"}
    assert expected.get(case, "") in str(caught.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.nii.gz")} == before  # nothing new or changed
    assert not list(tmp_path.rglob("*.partial*"))


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    source = write_nifti(tmp_path / "scan.nii.gz", smooth_volume((32, 32, 3)))

    def half_written(image, filename):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", half_written)
    with pytest.raises(UserInputError, match=r"out\.nii\.gz: cannot write \(disk full\)"):
        run(tmp_path, source, generator_file(tmp_path / "g.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt", "scan.nii.gz"]


def test_a_folder_with_a_corrupt_file_writes_the_others_and_exits_1(tmp_path, monkeypatch, capsys):
    scans = tmp_path / "scans"
    for i in range(2):
        write_nifti(scans / f"good{i}.nii.gz", blob_volume(i, (32, 32, 3)))
    (scans / "corrupt.nii.gz").write_bytes(b"\x1f\x8b truncated")
    (scans / "notes.txt").write_text("not a scan")
    code, out, err = cli(monkeypatch, capsys, "--input", scans, "--output", tmp_path / "sr",
                         "--checkpoint", generator_file(tmp_path / "g.pt"))
    assert code == 1, err
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["good0.nii.gz", "good1.nii.gz"]
    assert [line for line in out.splitlines() if line.startswith("skipped:")] == [
        next(line for line in out.splitlines() if "corrupt.nii.gz" in line and line.startswith("skipped"))]
    assert "failed" in next(line for line in out.splitlines() if line.startswith("corrupt.nii.gz"))
    assert err.startswith("error: 1 of 3 scans failed") and err.count("\n") == 1
    for i in range(2):
        assert_round_trip(scans / f"good{i}.nii.gz", tmp_path / "sr" / f"good{i}.nii.gz")


def test_an_interrupted_folder_is_finished_with_skip_existing(tmp_path, monkeypatch, capsys):
    """Outputs are written whole or not at all: a rerun keeps those that exist and writes the rest."""
    scans = tmp_path / "scans"
    for i in range(3):
        write_nifti(scans / f"scan{i}.nii.gz", blob_volume(i, (32, 32, 3)))
    checkpoint = generator_file(tmp_path / "g.pt")
    done = write_nifti(tmp_path / "sr" / "scan1.nii.gz", blob_volume(9, (32, 32, 3)))  # the run before
    before = done.read_bytes()
    args = ["--input", scans, "--output", tmp_path / "sr", "--checkpoint", checkpoint]
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 2 and "--skip-existing to keep it" in err
    code, out, err = cli(monkeypatch, capsys, *args, "--skip-existing")
    assert code == 0, err
    assert "2 scan(s) to super-resolve; existing outputs kept" in out
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == [f"scan{i}.nii.gz" for i in range(3)]
    assert done.read_bytes() == before
    for i in (0, 2):
        assert_round_trip(scans / f"scan{i}.nii.gz", tmp_path / "sr" / f"scan{i}.nii.gz")
    code, _, err = cli(monkeypatch, capsys, *args, "--skip-existing", "--overwrite")
    assert code == 2 and "give one" in err


def test_progress_steps_through_each_scans_slices_and_leaves_the_output_alone(tmp_path, monkeypatch):
    """One progress step per PROGRESS_SLICES slices of each scan, named `[i/n] file (S slices, K a
    step)`; the output is what one pass over the whole volume gives."""
    scans = tmp_path / "scans"
    for i, slices in enumerate((20, 3)):
        write_nifti(scans / f"scan{i}.nii.gz", blob_volume(i, (32, 32, slices)))
    checkpoint, seen = generator_file(tmp_path / "g.pt"), []

    def track(items, description):
        steps = list(items)
        seen.append((description, len(steps)))
        return steps

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # one slice per thread: steps of 16
    predict(PredictRequest(input=scans, output=tmp_path / "sr", model=ModelChoice(checkpoint=checkpoint)),
            track=track)
    assert apply.PROGRESS_SLICES == 16 and seen == [("[1/2] scan0.nii.gz (20 slices, 16 a step)", 2),
                                                   ("[2/2] scan1.nii.gz (3 slices, 16 a step)", 1)]
    seen.clear()  # batches of 6 over 2 threads: steps of 24, whole multiples of the 12 run at once
    predict(PredictRequest(input=scans, output=tmp_path / "sr6", model=ModelChoice(checkpoint=checkpoint),
                           options=Options(batch_size=6)), track=track)
    assert seen == [("[1/2] scan0.nii.gz (20 slices, 24 a step)", 1),
                    ("[2/2] scan1.nii.gz (3 slices, 24 a step)", 1)]
    monkeypatch.setattr(apply, "PROGRESS_SLICES", 1000)
    predict(PredictRequest(input=scans, output=tmp_path / "whole", model=ModelChoice(checkpoint=checkpoint)))
    for i in range(2):
        name = f"scan{i}.nii.gz"
        assert_round_trip(scans / name, tmp_path / "sr" / name)
        np.testing.assert_array_equal(nib.load(str(tmp_path / "sr" / name)).get_fdata(),
                                      nib.load(str(tmp_path / "whole" / name)).get_fdata())


# MLflow sources: a real store, runs made with the schema functions.


@pytest.fixture
def store(tmp_path, tiny_synthetic_cache) -> tuple[Tracking, dict[str, str], list[Path]]:
    """A finished cpce study `s` whose best trial t0 has 3 folds, each with its own generator, and
    an older `train` run that logged a bare state_dict."""
    t, cache, config = Tracking.for_workdir(Workdir(tmp_path / "work")), Cache.open(tiny_synthetic_cache), \
        tiny_config()
    older = tracking.start_run(t, EXPERIMENT, "older", runs.study_tags("older", "cpce", cache, "psnr", "",
                                                                       "0" * 64))
    tracking.end_run(t, older)  # no trial finished all its folds
    time.sleep(0.01)  # distinct start times: "latest" must be well defined
    study = tracking.start_run(t, EXPERIMENT, "s", runs.study_tags("s", "cpce", cache, "psnr", "", "0" * 64))
    trial = tracking.start_run(t, EXPERIMENT, "s-t0", runs.trial_tags("s", "t0", "cpce", cache), study)
    runs.log_config(t, trial, config)
    ids, files = {}, []
    for k in range(3):
        fold = tracking.start_run(t, EXPERIMENT, f"t0-fold{k}", runs.training_tags(
            RunKind.FOLD, config, cache, k, cache.path, f"t0-fold{k}", TrialRef("s", "t0", trial)), trial)
        runs.log_config(t, fold, config)
        path = tmp_path / f"fold{k}" / runs.GENERATOR_ARTIFACT
        path.parent.mkdir()
        write_generator(path, GeneratorFile(config, random_weights(config, 10 + k), TrainingData.of(cache)))
        tracking.log_file(t, fold, path)
        tracking.end_run(t, fold)
        ids[f"fold{k}"], files = fold, [*files, path]
    runs.end_trial(t, trial, runs.TrialState.COMPLETE)
    runs.set_best_trial(t, study, "t0")
    tracking.end_run(t, study)
    time.sleep(0.01)
    tracking.end_run(t, tracking.start_run(t, EXPERIMENT, "c", runs.study_tags("c", "circle", cache, "psnr",
                                                                               "", "0" * 64)))
    old = tracking.start_run(t, EXPERIMENT, "old", runs.training_tags(RunKind.TRAIN, config, cache, 0,
                                                                      cache.path, "old"))
    runs.log_config(t, old, config)
    legacy = tmp_path / "legacy" / runs.GENERATOR_ARTIFACT
    legacy.parent.mkdir()
    torch.save(random_weights(config, 99), legacy)
    tracking.log_file(t, old, legacy)
    tracking.end_run(t, old)
    ids["old"] = old
    return t, ids, files


def by_hand(source: Path, states: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """The mean of plain G(x) over canonical axial slices, clipped, in the input's range."""
    volume = nib.as_closest_canonical(nib.load(str(source))).get_fdata().astype(np.float32)
    lo, hi = volume.min(), volume.max()
    x = torch.from_numpy(np.moveaxis((volume - lo) / (hi - lo), -1, 0).copy())[:, None]
    outputs = []
    for state in states:
        net = model_spec("cpce").generator(tiny_config()).eval()
        net.load_state_dict(state)
        with torch.no_grad():
            outputs.append(net(x)[:, 0])
    mean = torch.stack(outputs).mean(0).clamp(0, 1).numpy()
    return np.moveaxis(mean, 0, -1) * (hi - lo) + lo


def test_study_ensemble_is_the_mean_of_its_fold_generators(store, tmp_path):
    t, ids, files = store
    volume = smooth_volume((48, 40, 4))
    volume[:, :, 0] = 0.0  # an empty slice: computed once, shared
    source = write_oriented(tmp_path / "scan.nii.gz", volume, "LPS")
    states = [read_generator(f).state_dict for f in files]
    expected = by_hand(source, states)
    for choice in (ModelChoice(study="s"), ModelChoice(latest="cpce")):
        said: list[str] = []
        out = tmp_path / f"{choice.study or choice.latest}.nii.gz"
        result = predict(PredictRequest(input=source, output=out, model=choice, tracking=t,
                                        experiment=EXPERIMENT), say=said.append)
        assert len(result.model.generators) == 3 and "study s, trial t0 (3 fold models" in said[0]
        assert said[1].startswith("trained on 256×256 slices") and "(synthetic)" in said[1]
        got = nib.as_closest_canonical(nib.load(str(out))).get_fdata()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * volume.max())
    assert "the latest finished cpce study" in said[0]
    with pytest.raises(UserInputError, match="study 'older' has no trial that finished all folds"):
        predict(PredictRequest(input=source, output=tmp_path / "x.nii.gz", model=ModelChoice(study="older"),
                               tracking=t, experiment=EXPERIMENT))

    one = tmp_path / "fold1.nii.gz"
    predict(PredictRequest(input=source, output=one, model=ModelChoice(run=ids["fold1"]), tracking=t,
                           experiment=EXPERIMENT))
    np.testing.assert_allclose(nib.as_closest_canonical(nib.load(str(one))).get_fdata(),
                               by_hand(source, states[1:2]), rtol=0, atol=1e-4 * volume.max())


def test_runs_logged_before_self_describing_files_still_load(store, tmp_path):
    t, ids, _ = store
    source = write_nifti(tmp_path / "scan.nii.gz", smooth_volume((32, 32, 3)))
    said: list[str] = []
    predict(PredictRequest(input=source, output=tmp_path / "out.nii.gz", model=ModelChoice(run=ids["old"]),
                           tracking=t, experiment=EXPERIMENT), say=said.append)
    assert "keep 0.5 assumed" in said[1]
    with pytest.raises(UserInputError, match="no finished study named 'nope'"):
        predict(PredictRequest(input=source, output=tmp_path / "x.nii.gz", model=ModelChoice(study="nope"),
                               tracking=t, experiment=EXPERIMENT))


# The slice runner that `report` and `predict` share.


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_slice_runner_equals_plain_g_on_every_slice(model):
    config = tiny_config(model)
    net = model_spec(model).generator(config).eval()
    net.load_state_dict(random_weights(config, 1))
    lr = torch.rand(5, 40, 36)
    lr[1] = 0.0
    lr[3] = 0.0
    with torch.no_grad():
        expected = net(lr[:, None])[:, 0]
    threads = torch.get_num_threads()
    for batch in (None, 2):
        got = SliceRunner(net, batch_size=batch)(lr)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert torch.get_num_threads() == threads  # the runner's one-thread workers leave no trace


def test_a_keep_other_than_the_models_is_warned_about(tmp_path, monkeypatch, capsys):
    source = write_nifti(tmp_path / "scan.nii.gz", blob_volume(0, (32, 32, 3)))
    checkpoint = generator_file(tmp_path / "g.pt")  # trained at keep 0.5
    code, out, err = cli(monkeypatch, capsys, "--input", source, "--output", tmp_path / "a.nii.gz",
                         "--checkpoint", checkpoint, "--keep", "0.3")
    assert code == 0, err
    assert "warning: --keep 0.3 is not the 0.5 it was trained at" in out
    code, out, err = cli(monkeypatch, capsys, "--input", source, "--output", tmp_path / "b.nii.gz",
                         "--checkpoint", checkpoint)
    assert code == 0 and "warning: --keep" not in out, err
