"""Subject-level, site-stratified test set and K cross-validation folds (docs/data.md; why:
docs/architecture.md §4.2).

No slice of a test or validation subject is ever trained on: splits list subject ids only.
File format (`splits.json`, like nnU-Net's `splits_final.json`):
    {"seed": 0, "test": [ids], "folds": [{"train": [ids], "val": [ids]}, ...]}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mrisr_ray.errors import UserInputError


@dataclass(frozen=True)
class Fold:
    train: list[str]
    val: list[str]


@dataclass(frozen=True)
class Splits:
    seed: int
    test: list[str]
    folds: list[Fold]

    @property
    def development(self) -> list[str]:
        """Every non-test subject (what `train --all-train` uses)."""
        return sorted(s for fold in self.folds for s in fold.val)

    def fold(self, k: int) -> Fold:
        if not 0 <= k < len(self.folds):
            raise UserInputError(f"fold {k} out of range: splits.json has folds 0..{len(self.folds) - 1}")
        return self.folds[k]

    def seen_by(self, folds: list[int] | None = None) -> set[str]:
        """Subjects that trained or selected the models of `folds` (None: all folds)."""
        chosen = range(len(self.folds)) if folds is None else folds
        return {s for k in chosen for s in (*self.fold(k).train, *self.fold(k).val)}

    def digest(self) -> str:
        """SHA-256 of the canonical content (sorted ids, fold order kept): equal digests, equal
        splits, whatever the file's formatting."""
        canonical = {"seed": self.seed, "test": sorted(self.test),
                     "folds": [{"train": sorted(f.train), "val": sorted(f.val)} for f in self.folds]}
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    def check(self, where: str) -> None:
        """Refuse splits in which a test subject trains or validates, or a fold validates on a
        subject it trains on: the guarantee every score of the report rests on."""
        for k, fold in enumerate(self.folds):
            leaked = sorted(set(self.test) & (set(fold.train) | set(fold.val)))
            if leaked:
                raise UserInputError(f"{where}: test subject(s) {', '.join(leaked)} in fold {k}")
            both = sorted(set(fold.train) & set(fold.val))
            if both:
                raise UserInputError(f"{where}: fold {k} trains and validates on {', '.join(both)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, where: str) -> Splits:
        """Parsed and checked (`check`); `where` names the source in errors."""
        try:
            raw = json.loads(text)
            splits = cls(seed=raw["seed"], test=list(raw["test"]),
                         folds=[Fold(train=list(f["train"]), val=list(f["val"])) for f in raw["folds"]])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{where}: not a splits file ({type(exc).__name__}: {exc})") from None
        splits.check(where)
        return splits

    @classmethod
    def load(cls, path: str | Path) -> Splits:
        return cls.from_json(Path(path).read_text(), str(path))


def stratified_order(sites: dict[str, str], rng: np.random.Generator) -> list[str]:
    """Subjects ordered so that every prefix mirrors the site mix (the test set is a prefix).

    Each subject gets its fractional rank (j + 0.5) / n_site inside a shuffled copy of its site;
    sorting by that rank interleaves the sites in proportion.
    """
    keyed = []
    for site in sorted(set(sites.values())):
        members = sorted(s for s, v in sites.items() if v == site)
        rng.shuffle(members)
        keyed += [((j + 0.5) / len(members), rng.random(), s) for j, s in enumerate(members)]
    return [s for _, _, s in sorted(keyed)]


def make_splits(sites: dict[str, str], n_folds: int = 5, test_fraction: float = 0.1,
                seed: int = 0) -> Splits:
    """A test set of max(1, round(test_fraction·N)) subjects and `n_folds` folds over the rest.

    Args:
        sites: subject id → site name.
        n_folds: K of the cross-validation (>= 2).
        test_fraction: share of subjects held out for the final test.
        seed: seeds the shuffles; recorded in the result.
    """
    if n_folds < 2:
        raise UserInputError(f"--folds must be at least 2, got {n_folds}")
    if not 0.0 < test_fraction < 1.0:
        raise UserInputError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if seed < 0:
        raise UserInputError(f"--seed must be 0 or more, got {seed}")
    n_test = max(1, round(test_fraction * len(sites)))
    if len(sites) - n_test < n_folds:
        raise UserInputError(
            f"{len(sites)} subjects are too few for {n_folds} folds plus {n_test} test subject(s): "
            f"need at least {n_folds + n_test}"
        )
    rng = np.random.default_rng(seed)
    order = stratified_order(sites, rng)
    test, rest = sorted(order[:n_test]), order[n_test:]
    # Deal each site's remaining subjects round-robin, the dealer position carried across
    # sites, so every fold gets each site's share to within one subject.
    vals: list[list[str]] = [[] for _ in range(n_folds)]
    dealt = 0
    for site in sorted(set(sites.values())):
        for subject in (s for s in rest if sites[s] == site):
            vals[dealt % n_folds].append(subject)
            dealt += 1
    folds = [Fold(train=sorted(set(rest) - set(val)), val=sorted(val)) for val in vals]
    return Splits(seed=seed, test=test, folds=folds)
