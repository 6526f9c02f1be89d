"""`mrisr-ray prepare` end to end: real entry point, exit codes, one-line errors."""

import gzip
import json

import numpy as np
import pytest
from helpers import blob_volume, run_cli, write_nifti


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    # Progress may come first; the log's path does not follow bad input (the log adds nothing).
    assert not any(line.startswith("log: ") for line in result.stdout.splitlines()), result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_of_app_and_prepare_show_purpose_and_example():
    top = run_cli("--help")
    assert top.returncode == 0 and "Example:" in top.stdout and "prepare" in top.stdout
    sub = run_cli("prepare", "--help")
    assert sub.returncode == 0 and "Example: mrisr-ray prepare --data-dir" in sub.stdout


def test_prepare_ixi_folder(ixi_dir, tmp_path):
    out = tmp_path / "cache"
    result = run_cli("prepare", "--data-dir", ixi_dir, "--out", out, "--folds", "3",
                     "--sites", "all")
    assert result.returncode == 0, result.stderr
    assert "subjects   8 (Guys: 4, HH: 4)" in result.stdout
    assert json.loads((out / "splits.json").read_text())["seed"] == 0


def test_prepare_defaults_to_the_workdir(ixi_dir, tmp_path):
    result = run_cli("prepare", "--data-dir", ixi_dir, "--folds", "3",
                     env={"MRISR_RAY_WORKDIR": str(tmp_path / "wd")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "wd" / "data" / "IXI-T2" / "manifest.json").is_file()


def bad_inputs(tmp_path):
    """(name, folder to prepare, extra args, expected fragments) for every documented bad input."""
    cases = []

    def folder(name, files):
        root = tmp_path / name
        root.mkdir()
        for i in range(7):
            write_nifti(root / f"IXI{i:03d}-Guys-{i:04d}-T2.nii.gz", blob_volume(i))
        for fname, writer in files.items():
            writer(root / fname)
        return root

    def nifti_of(data):
        return lambda path: write_nifti(path, data, zooms=(1.0,) * min(data.ndim, 3))

    def truncated(path):
        good = write_nifti(path, blob_volume(50, shape=(32, 32, 40)))
        path.write_bytes(good.read_bytes()[:2000])

    def text_as_nifti(path):
        with gzip.open(path, "wb") as f:
            f.write(b"not an image " * 50)

    nan = blob_volume(1).astype(np.float32)
    nan[1, 1, 1] = np.nan
    cases.append(("missing", tmp_path / "absent", [], ["absent: data directory not found"]))
    (tmp_path / "empty").mkdir()
    cases.append(("empty", tmp_path / "empty", [], ["no NIfTI files"]))
    only_t1 = tmp_path / "t1"
    write_nifti(only_t1 / "IXI001-HH-0001-T1.nii.gz", blob_volume(0))
    cases.append(("no T2", only_t1, [], ["no T2 scans found"]))
    cases.append(("truncated", folder("trunc", {"IXI100-HH-0100-T2.nii.gz": truncated}), [],
                  ["IXI100-HH-0100-T2.nii.gz"]))
    cases.append(("not nifti", folder("text", {"IXI101-HH-0101-T2.nii.gz": text_as_nifti}), [],
                  ["IXI101-HH-0101-T2.nii.gz", "NIfTI"]))
    cases.append(("4-D", folder("four", {"IXI102-HH-0102-T2.nii.gz": nifti_of(np.ones((8, 8, 4, 3)))}),
                  [], ["IXI102-HH-0102-T2.nii.gz", "4-D"]))
    cases.append(("2-D", folder("two", {"IXI103-HH-0103-T2.nii.gz": nifti_of(np.ones((8, 8)))}),
                  [], ["IXI103-HH-0103-T2.nii.gz", "2-D"]))
    cases.append(("NaN", folder("nan", {"IXI104-HH-0104-T2.nii.gz": nifti_of(nan)}), [],
                  ["IXI104-HH-0104-T2.nii.gz", "NaN or Inf"]))
    cases.append(("constant", folder("const", {"IXI105-HH-0105-T2.nii.gz":
                                               nifti_of(np.full((32, 32, 6), 3.0))}),
                  [], ["IXI105-HH-0105-T2.nii.gz", "constant volume"]))
    cases.append(("size", folder("size", {"IXI106-HH-0106-T2.nii.gz":
                                          nifti_of(blob_volume(6, shape=(48, 32, 6)))}),
                  [], ["IXI106-HH-0106-T2.nii.gz", "in-plane size 48x32"]))
    cases.append(("duplicate", folder("dup", {"mask_IXI003-Guys-0003-T2.nii.gz":
                                              nifti_of(blob_volume(3))}),
                  [], ["IXI003-Guys-0003", "resolves to subject"]))
    cases.append(("few", folder("few", {}), ["--folds", "7"], ["too few for 7 folds"]))
    return cases


def test_every_bad_input_is_one_line_exit_2_and_no_cache(tmp_path):
    for name, data_dir, extra, fragments in bad_inputs(tmp_path):
        out = tmp_path / "out" / name.replace(" ", "_")
        result = run_cli("prepare", "--data-dir", data_dir, "--out", out, *extra)
        assert_one_line_error(result, *fragments)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists(), name


def test_existing_out_refused_without_overwrite(ixi_dir, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli("prepare", "--data-dir", ixi_dir, "--out", out, "--folds", "3"),
                          "already holds other files", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    ok = run_cli("prepare", "--data-dir", ixi_dir, "--out", out, "--folds", "3", "--overwrite")
    assert ok.returncode == 0 and (out / "manifest.json").is_file()


def test_out_below_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert_one_line_error(run_cli("prepare", "--synthetic", "--out", tmp_path / "a-file" / "cache"),
                          "cannot create the folder", "a file is in the way")


def test_out_that_holds_the_scans_is_refused_even_with_overwrite(ixi_dir, tmp_path):
    """Replacing --out would delete it, the scans with it."""
    scans = sorted(p.name for p in ixi_dir.iterdir())
    for out in (ixi_dir, tmp_path):  # the data folder itself, or a folder above it
        assert_one_line_error(run_cli("prepare", "--data-dir", ixi_dir, "--out", out, "--folds", "3",
                                      "--overwrite"), f"--out {out} holds the scans it would be made from")
    assert sorted(p.name for p in ixi_dir.iterdir()) == scans


@pytest.mark.parametrize("args,fragment", [
    ([], "give exactly one of --data-dir DIR or --synthetic"),
    (["--synthetic", "--subjects", "3"], "too few for 5 folds"),
    (["--synthetic", "--keep", "0.3"], "--keep applies to --data-dir"),
    (["--synthetic", "--seed", "-1"], "--seed must be 0 or more, got -1"),
])
def test_argument_errors(args, fragment, tmp_path):
    assert_one_line_error(run_cli("prepare", "--out", tmp_path / "x", *args), fragment)


def test_prepare_synthetic_summary(tmp_path):
    result = run_cli("prepare", "--synthetic", "--subjects", "6", "--out", tmp_path / "syn")
    assert result.returncode == 0, result.stderr
    assert "subjects   6" in result.stdout and "not IXI numbers" in result.stdout
