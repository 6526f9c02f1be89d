"""The prepared dataset cache: one memory-mapped array of kept HR slices per subject.

Layout of a cache folder (docs/data.md):
    manifest.json     protocol, per-subject source path, sha256, shape, spacing, kept slices
    splits.json       subject-level test set and K folds (see `splits.py`)
    subjects/<id>.npy (kept slices, H, W) float32 in [0, 1], read with mmap
    nifti/            only for the synthetic cohort: the generated source scans

Writes are atomic: everything is built in `<out>.partial/` and renamed into place at the end,
so an interrupted `prepare` leaves no half cache. Each subject finished there is recorded in
`<out>.partial/done/<id>.json`; after Ctrl-C (or a killed process) the same command skips every
subject whose record matches its source file (path and SHA-256) and the protocol. Any error
other than Ctrl-C (bad input among them) removes the staging folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mrisr_ray.data.discovery import Scan
from mrisr_ray.data.splits import Splits, make_splits
from mrisr_ray.data.volume import (
    FOREGROUND_FRACTION,
    FOREGROUND_THRESHOLD,
    foreground_slices,
    read_volume,
)
from mrisr_ray.errors import Interrupted, UserInputError, describe
from mrisr_ray.progress import Track, no_progress
from mrisr_ray.workdir import ensure_folder

PROTOCOL_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = "splits.json"
DONE = "done"  # inside the staging folder: one record per finished subject


@dataclass(frozen=True)
class Protocol:
    """Everything that changes the numbers a cache produces; its hash tags every run."""

    keep: float = 0.5  # fraction of each k-space axis kept by `degrade`
    clip_percentiles: tuple[float, float] | None = None  # robust min-max (None: plain min-max)
    foreground_threshold: float = FOREGROUND_THRESHOLD
    foreground_fraction: float = FOREGROUND_FRACTION
    orientation: str = "RAS canonical, axial slices along the last axis"
    version: int = PROTOCOL_VERSION

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SubjectEntry:
    subject: str
    site: str
    source: str  # relative to the cache folder when the scan lives inside it, else absolute
    sha256: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    kept_slices: list[int]
    array: str  # relative path of the .npy file

    @classmethod
    def from_dict(cls, raw: dict) -> SubjectEntry:
        """From its JSON form (the manifest's, a resume record's): lists back to tuples."""
        return cls(**{**raw, "shape": tuple(raw["shape"]), "spacing": tuple(raw["spacing"])})


@dataclass
class Manifest:
    protocol: Protocol
    subjects: list[SubjectEntry]
    origin: dict = field(default_factory=dict)  # how the sources were made (e.g. synthetic seed)

    @property
    def protocol_hash(self) -> str:
        return self.protocol.digest()

    @property
    def data_digest(self) -> str:
        """SHA-256 over every subject's (id, source file SHA-256, kept slices): which scans and
        slices the cache holds. Ids alone would not do: synthetic ids repeat across seeds."""
        content = sorted([s.subject, s.sha256, list(s.kept_slices)] for s in self.subjects)
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()

    def to_json(self) -> str:
        body = asdict(self)
        body["protocol_hash"] = self.protocol_hash
        return json.dumps(body, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        proto = raw["protocol"]
        if proto.get("clip_percentiles") is not None:
            proto["clip_percentiles"] = tuple(proto["clip_percentiles"])
        subjects = [
            SubjectEntry.from_dict(s) for s in raw["subjects"]
        ]
        return cls(protocol=Protocol(**proto), subjects=subjects, origin=raw.get("origin", {}))


@dataclass(frozen=True)
class CacheSummary:
    path: Path
    n_subjects: int
    sites: dict[str, int]
    n_slices: int
    n_test: int
    n_folds: int
    bytes_on_disk: int
    protocol_hash: str

    def lines(self) -> list[str]:
        site_text = ", ".join(f"{k}: {v}" for k, v in sorted(self.sites.items()))
        return [
            f"cache      {self.path}",
            f"subjects   {self.n_subjects} ({site_text})",
            f"slices     {self.n_slices} kept by the foreground rule",
            f"splits     {self.n_test} test subject(s), {self.n_folds} folds over the rest",
            f"size       {self.bytes_on_disk / 2**20:.1f} MiB",
            f"protocol   {self.protocol_hash}",
        ]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty `out` unless `overwrite`; an empty folder is fine."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        what = "an mrisr-ray cache" if (out / MANIFEST).is_file() else "other files"
        raise UserInputError(f"{out}: already holds {what}; pass --overwrite to replace it")


def staging_folder(out: Path) -> Path:
    """`<out>.partial/`, with what an interrupted run left in it."""
    staging = out.with_name(out.name + ".partial")
    ensure_folder(staging.parent, f"--out {out}")
    if staging.exists() and not staging.is_dir():
        raise UserInputError(f"{staging}: exists and is not a folder; delete it")
    staging.mkdir(exist_ok=True)
    return staging


def publish(staging: Path, out: Path) -> None:
    """Move the finished `staging` folder to `out`, replacing what was there."""
    if out.exists():
        retired = out.with_name(out.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(out, retired)
        os.replace(staging, out)
        shutil.rmtree(retired)
    else:
        os.replace(staging, out)


def save_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(file)` into a temporary file renamed to `path`: a killed process leaves no half file."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        write(file)
    os.replace(temporary, path)


def source_of(scan: Scan, staging: Path) -> str:
    """The manifest's `source`: relative to the cache when the scan lives inside it."""
    source = scan.path.resolve()
    return str(source.relative_to(staging.resolve())) if source.is_relative_to(staging.resolve()) \
        else str(source)


def prepare_subject(scan: Scan, staging: Path, protocol: Protocol, sha256: str) -> SubjectEntry:
    """Read, normalise and store one subject's kept slices in `staging`."""
    volume = read_volume(scan.path, protocol.clip_percentiles)
    kept = foreground_slices(volume.data)
    if kept.size == 0:
        raise UserInputError(f"{scan.path}: no slice passes the foreground rule")
    slices = np.ascontiguousarray(np.moveaxis(volume.data[:, :, kept], -1, 0))
    array = f"subjects/{scan.subject}.npy"
    save_atomically(staging / array, lambda file: np.save(file, slices))
    return SubjectEntry(subject=scan.subject, site=scan.site, source=source_of(scan, staging),
                        sha256=sha256, shape=volume.data.shape, spacing=volume.spacing,
                        kept_slices=kept.tolist(), array=array)


def done_before(record: Path, scan: Scan, staging: Path, protocol: Protocol,
                sha256: str) -> SubjectEntry | None:
    """The entry an interrupted run recorded for this scan, if made from the same file, with the
    same bytes, under the same protocol, and its array is there."""
    try:
        raw = json.loads(record.read_text())
        entry = SubjectEntry.from_dict(raw["entry"])
    except (OSError, ValueError, KeyError, TypeError):  # none, or not one of ours
        return None
    same = raw.get("protocol") == protocol.digest() and entry.sha256 == sha256 and \
        entry.source == source_of(scan, staging) and entry.site == scan.site
    return entry if same and (staging / entry.array).is_file() else None


def write_cache(scans: list[Scan], staging: Path, protocol: Protocol, splits_args: dict,
                origin: dict | None = None, track: Track = no_progress) -> None:
    """Fill `staging` with subject arrays, `manifest.json` and `splits.json`, continuing from the
    subjects an interrupted run finished there (module docstring)."""
    (staging / "subjects").mkdir(exist_ok=True)
    (staging / DONE).mkdir(exist_ok=True)
    entries: list[SubjectEntry] = []
    in_plane: tuple[int, int] | None = None
    continuing = " (continuing an interrupted run)" if any((staging / DONE).iterdir()) else ""
    for scan in track(scans, f"Preparing subjects{continuing}"):
        sha256, record = file_sha256(scan.path), staging / DONE / f"{scan.subject}.json"
        entry = done_before(record, scan, staging, protocol, sha256)
        if entry is None:
            # The record goes first: one left beside a rewritten array could match it later.
            record.unlink(missing_ok=True)
            entry = prepare_subject(scan, staging, protocol, sha256)
            body = json.dumps({"protocol": protocol.digest(), "entry": asdict(entry)}).encode()
            save_atomically(record, lambda file, body=body: file.write(body))
        if in_plane is None:
            in_plane = entry.shape[:2]
        elif entry.shape[:2] != in_plane:
            raise UserInputError(
                f"{scan.path}: in-plane size {entry.shape[0]}x{entry.shape[1]} differs from the cohort's "
                f"{in_plane[0]}x{in_plane[1]}"
            )
        entries.append(entry)
    splits = make_splits({e.subject: e.site for e in entries}, **splits_args)
    (staging / SPLITS).write_text(splits.to_json())
    manifest = Manifest(protocol=protocol, subjects=entries, origin=origin or {})
    (staging / MANIFEST).write_text(manifest.to_json())
    remove_leftovers(staging, entries)


def remove_leftovers(staging: Path, entries: list[SubjectEntry]) -> None:
    """Everything in `staging` that the manifest does not name: the resume records, and what an
    interrupted run over other scans (or the synthetic cohort) left there."""
    arrays = {entry.array for entry in entries}
    sources = {Path(entry.source).parts[0] for entry in entries if not Path(entry.source).is_absolute()}
    for item in staging.iterdir():
        if item.name in {MANIFEST, SPLITS, "subjects", *sources}:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
    for stale in (staging / "subjects").iterdir():
        if f"subjects/{stale.name}" not in arrays:
            stale.unlink()


class PrepareInterrupted(Interrupted):
    """Ctrl-C during `prepare`: the staging folder is kept; the message says how to go on."""


def build_atomically(out: Path, overwrite: bool, fill: Callable[[Path], None]) -> None:
    """Run `fill(staging)` and publish the staging folder as `out`. Ctrl-C keeps the staging
    folder for the next run to continue from; any other failure removes it."""
    check_output_folder(out, overwrite)
    staging = staging_folder(out)
    try:
        fill(staging)
        publish(staging, out)
    except KeyboardInterrupt:
        done = len(list((staging / DONE).glob("*.json"))) if (staging / DONE).is_dir() else 0
        raise PrepareInterrupted(f"prepare interrupted; the same command continues it ({done} subject(s) "
                                 f"kept in {staging})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def prepare_cache(scans: list[Scan], out: str | Path, protocol: Protocol | None = None,
                  n_folds: int = 5, test_fraction: float = 0.1, seed: int = 0,
                  overwrite: bool = False, track: Track = no_progress) -> CacheSummary:
    """Build the cache for `scans` at `out` atomically and return its summary."""
    out = Path(out).resolve()
    inside = next((scan.path for scan in scans if scan.path.resolve().is_relative_to(out)), None)
    if inside is not None:  # replacing `out` would delete the scans themselves
        raise UserInputError(f"--out {out} holds the scans it would be made from ({inside}): choose a "
                             "folder outside --data-dir")
    check_output_folder(out, overwrite)
    splits_args = {"n_folds": n_folds, "test_fraction": test_fraction, "seed": seed}
    # Checked before the slow part so a bad fold count fails at once.
    make_splits({s.subject: s.site for s in scans}, **splits_args)
    build_atomically(out, overwrite, lambda staging: write_cache(
        scans, staging, protocol or Protocol(), splits_args, track=track))
    return Cache.open(out).summary()


class Cache:
    """Read access to a prepared cache: manifest, splits and memory-mapped subject slices."""

    def __init__(self, path: Path, manifest: Manifest, splits: Splits):
        self.path = path
        self.manifest = manifest
        self.splits = splits
        self._entries = {e.subject: e for e in manifest.subjects}

    @classmethod
    def open(cls, path: str | Path) -> Cache:
        path = Path(path).resolve()
        if not (path / MANIFEST).is_file() or not (path / SPLITS).is_file():
            raise UserInputError(
                f"{path}: not a prepared mrisr-ray cache (no {MANIFEST}/{SPLITS}); "
                "run `mrisr-ray prepare` first"
            )
        try:
            manifest = Manifest.from_json((path / MANIFEST).read_text())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # damaged or hand-edited
            raise UserInputError(f"{path / MANIFEST}: not an mrisr-ray manifest ({describe(exc)}); run "
                                 "`mrisr-ray prepare --overwrite` again") from None
        if manifest.protocol.version != PROTOCOL_VERSION:
            raise UserInputError(
                f"{path}: cache protocol version {manifest.protocol.version}, this mrisr-ray "
                f"reads version {PROTOCOL_VERSION}; run `mrisr-ray prepare --overwrite` again"
            )
        return cls(path, manifest, Splits.load(path / SPLITS))

    @property
    def subjects(self) -> list[str]:
        return list(self._entries)

    @property
    def keep(self) -> float:
        return self.manifest.protocol.keep

    def entry(self, subject: str) -> SubjectEntry:
        if subject not in self._entries:
            raise UserInputError(f"{self.path}: subject {subject} is not in this cache")
        return self._entries[subject]

    def slices(self, subject: str, limit: int | None = None) -> np.ndarray:
        """(kept slices, H, W) float32 memmap of one subject's HR slices; with `limit`, a copy of
        at most `limit` of them, evenly spaced (the same ones on every call)."""
        slices = np.load(self.path / self.entry(subject).array, mmap_mode="r")
        if limit is None or limit >= len(slices):
            return slices
        return np.asarray(slices[np.linspace(0, len(slices) - 1, limit).round().astype(int)])

    def summary(self) -> CacheSummary:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return CacheSummary(
            path=self.path, n_subjects=len(self._entries),
            sites=dict(Counter(e.site for e in self.manifest.subjects)),
            n_slices=sum(len(e.kept_slices) for e in self.manifest.subjects),
            n_test=len(self.splits.test), n_folds=len(self.splits.folds),
            bytes_on_disk=size, protocol_hash=self.manifest.protocol_hash,
        )
