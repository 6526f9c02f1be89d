import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import blob_volume, other_protocol_cache, write_nifti

from mrisr_ray.data import Cache, discover_scans, load_volume, prepare_cache
from mrisr_ray.data import cache as cache_module
from mrisr_ray.data.cache import Protocol
from mrisr_ray.data.volume import read_volume
from mrisr_ray.errors import UserInputError


def test_prepare_writes_manifest_splits_and_mmap_slices(ixi_dir, tmp_path):
    out = tmp_path / "cache"
    summary = prepare_cache(discover_scans(ixi_dir), out, n_folds=3, test_fraction=0.25, seed=4)
    assert summary.n_subjects == 8 and summary.n_test == 2 and summary.n_folds == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["keep"] == 0.5 and manifest["protocol_hash"] == summary.protocol_hash
    entry = manifest["subjects"][0]
    assert set(entry) >= {"subject", "site", "source", "sha256", "shape", "spacing", "kept_slices"}
    assert entry["shape"] == [32, 32, 6] and entry["kept_slices"] == list(range(6))
    assert entry["source"] == str((ixi_dir / "IXI000-Guys-1000-T2.nii.gz").resolve())
    splits = json.loads((out / "splits.json").read_text())
    assert splits["seed"] == 4 and len(splits["folds"]) == 3

    cache = Cache.open(out)
    slices = cache.slices("IXI000-Guys-1000")
    assert isinstance(slices, np.memmap) and slices.shape == (6, 32, 32)
    expected = np.moveaxis(load_volume(ixi_dir / "IXI000-Guys-1000-T2.nii.gz"), -1, 0)
    np.testing.assert_array_equal(slices, expected)
    assert not (tmp_path / "cache.partial").exists()


def test_in_plane_size_mismatch_names_the_file(ixi_dir, tmp_path):
    odd = write_nifti(ixi_dir / "IXI100-IOP-0100-T2.nii.gz", blob_volume(5, shape=(40, 32, 6)))
    with pytest.raises(UserInputError, match=re.escape(f"{odd.name}: in-plane size 40x32 differs")):
        prepare_cache(discover_scans(ixi_dir), tmp_path / "cache", n_folds=3)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "cache.partial").exists()


def test_corrupt_file_leaves_no_half_cache(ixi_dir, tmp_path):
    (ixi_dir / "IXI007-HH-1007-T2.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(UserInputError, match=r"IXI007-HH-1007-T2\.nii\.gz"):
        prepare_cache(discover_scans(ixi_dir), tmp_path / "cache", n_folds=3)
    assert list(tmp_path.iterdir()) == [ixi_dir]


def test_existing_output_is_refused_unless_overwrite(ixi_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(UserInputError, match="already holds other files; pass --overwrite"):
        prepare_cache(discover_scans(ixi_dir), other, n_folds=3)
    assert (other / "thesis.tex").read_text() == "precious"
    out = tmp_path / "cache"
    prepare_cache(discover_scans(ixi_dir), out, n_folds=3)
    with pytest.raises(UserInputError, match="already holds an mrisr-ray cache"):
        prepare_cache(discover_scans(ixi_dir), out, n_folds=3)
    summary = prepare_cache(discover_scans(ixi_dir), out, n_folds=4, overwrite=True)
    assert summary.n_folds == 4 and not (tmp_path / "cache.old").exists()


def count_reads(monkeypatch, read: list[str], stop_after: int | None = None) -> None:
    """`prepare` appends the name of each scan it reads to `read`; Ctrl-C once `stop_after` are read."""
    def counted(path, *args, **kwargs):
        if stop_after is not None and len(read) == stop_after:
            raise KeyboardInterrupt
        read.append(Path(path).name)
        return read_volume(path, *args, **kwargs)

    monkeypatch.setattr(cache_module, "read_volume", counted)


def test_interrupted_prepare_continues_where_it_stopped(ixi_dir, tmp_path, monkeypatch):
    """Ctrl-C after 4 of 8 subjects keeps them in `cache.partial/`; the rerun reads only the other
    4, re-reads a scan whose file changed in between and drops leftovers; the cache equals one
    made in one go."""
    out = tmp_path / "cache"
    read: list[str] = []
    count_reads(monkeypatch, read, stop_after=4)
    kept = r"continues it \(4 subject\(s\) kept in .*cache\.partial"
    with pytest.raises(cache_module.PrepareInterrupted, match=kept):
        prepare_cache(discover_scans(ixi_dir), out, n_folds=3)
    assert not out.exists()
    first = list(read)
    changed = ixi_dir / first[0]
    write_nifti(changed, np.flip(load_volume(changed), axis=0).copy())
    (tmp_path / "cache.partial" / "subjects" / "IXI999-HH-9999.npy").write_bytes(b"stale")
    (tmp_path / "cache.partial" / "nifti").mkdir()  # as an interrupted synthetic prepare leaves

    read.clear()
    count_reads(monkeypatch, read)
    summary = prepare_cache(discover_scans(ixi_dir), out, n_folds=3)
    all_scans = sorted(p.name for p in ixi_dir.glob("*-T2.nii.gz"))
    assert sorted(read) == sorted({first[0], *(set(all_scans) - set(first))})
    assert summary.n_subjects == 8 and not (tmp_path / "cache.partial").exists()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "splits.json", "subjects"]
    assert sorted(p.name for p in (out / "subjects").iterdir()) == \
        sorted(f"{name.removesuffix('-T2.nii.gz')}.npy" for name in all_scans)

    fresh = tmp_path / "fresh"
    prepare_cache(discover_scans(ixi_dir), fresh, n_folds=3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads((fresh / "manifest.json").read_text())
    assert (out / "splits.json").read_text() == (fresh / "splits.json").read_text()
    for entry in manifest["subjects"]:
        np.testing.assert_array_equal(np.load(out / entry["array"]), np.load(fresh / entry["array"]))


def test_a_changed_protocol_prepares_every_subject_again(ixi_dir, tmp_path, monkeypatch):
    read: list[str] = []
    count_reads(monkeypatch, read, stop_after=4)
    with pytest.raises(cache_module.PrepareInterrupted):
        prepare_cache(discover_scans(ixi_dir), tmp_path / "cache", n_folds=3)
    read.clear()
    count_reads(monkeypatch, read)
    prepare_cache(discover_scans(ixi_dir), tmp_path / "cache", Protocol(keep=0.25), n_folds=3)
    assert len(read) == 8


def test_too_few_subjects_fails_before_reading(ixi_dir, tmp_path):
    with pytest.raises(UserInputError, match="too few for 8 folds"):
        prepare_cache(discover_scans(ixi_dir), tmp_path / "cache", n_folds=8)


def test_open_rejects_missing_and_other_protocol(tmp_path, tiny_synthetic_cache):
    with pytest.raises(UserInputError, match="not a prepared mrisr-ray cache"):
        Cache.open(tmp_path)
    with pytest.raises(UserInputError, match="protocol version 0"):
        Cache.open(other_protocol_cache(tiny_synthetic_cache, tmp_path / "old", version=0))
    damaged = other_protocol_cache(tiny_synthetic_cache, tmp_path / "damaged", version=1)
    manifest = damaged / "manifest.json"
    for text in (manifest.read_text()[:40], "[]"):  # truncated; valid JSON of another shape
        manifest.write_text(text)
        with pytest.raises(UserInputError, match=r"manifest\.json: not an mrisr-ray manifest"):
            Cache.open(damaged)


def test_data_digest_names_scans_and_slices_not_ids(tiny_synthetic_cache):
    from dataclasses import replace

    manifest = Cache.open(tiny_synthetic_cache).manifest
    digest = manifest.data_digest
    assert len(digest) == 64
    first = manifest.subjects[0]
    other_scan = replace(first, sha256="0" * 64)  # same id, another source file (another seed)
    assert replace(manifest, subjects=[other_scan, *manifest.subjects[1:]]).data_digest != digest
    fewer = replace(first, kept_slices=first.kept_slices[1:])
    assert replace(manifest, subjects=[fewer, *manifest.subjects[1:]]).data_digest != digest
    assert replace(manifest, subjects=manifest.subjects[::-1]).data_digest == digest
