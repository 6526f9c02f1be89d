import json
from collections import Counter

import pytest

from mrisr_ray.data import Splits, make_splits
from mrisr_ray.errors import UserInputError

SITES = {f"IXI{i:03d}": site for i, site in enumerate(["Guys"] * 30 + ["HH"] * 20 + ["IOP"] * 10)}


def test_splits_are_subject_level_disjoint_and_complete():
    splits = make_splits(SITES, n_folds=5, test_fraction=0.1, seed=3)
    assert len(splits.test) == 6
    vals = [s for fold in splits.folds for s in fold.val]
    assert len(vals) == len(set(vals)) == 54  # every non-test subject in exactly one val
    assert set(vals) | set(splits.test) == set(SITES)
    for fold in splits.folds:
        assert not set(fold.train) & set(fold.val)
        assert not set(fold.train) & set(splits.test)
        assert set(fold.train) | set(fold.val) == set(vals)


def test_splits_are_stratified_by_site():
    splits = make_splits(SITES, n_folds=5, test_fraction=0.1, seed=0)
    assert Counter(SITES[s] for s in splits.test) == {"Guys": 3, "HH": 2, "IOP": 1}
    for fold in splits.folds:
        counts = Counter(SITES[s] for s in fold.val)
        assert counts["Guys"] in (5, 6) and counts["HH"] in (3, 4) and counts["IOP"] in (1, 2)


def test_seeded_and_json_round_trip(tmp_path):
    a, b = make_splits(SITES, seed=1), make_splits(SITES, seed=1)
    assert a == b and a != make_splits(SITES, seed=2)
    path = tmp_path / "splits.json"
    path.write_text(a.to_json())
    raw = json.loads(path.read_text())
    assert set(raw) == {"seed", "test", "folds"} and set(raw["folds"][0]) == {"train", "val"}
    assert Splits.load(path) == a


def test_too_few_subjects_and_bad_arguments():
    six = {f"s{i}": "x" for i in range(6)}
    assert len(make_splits(six, n_folds=5).test) == 1
    with pytest.raises(UserInputError, match="too few for 5 folds plus 1 test"):
        make_splits({f"s{i}": "x" for i in range(5)}, n_folds=5)
    with pytest.raises(UserInputError, match="--folds"):
        make_splits(six, n_folds=1)
    with pytest.raises(UserInputError, match="--test-fraction"):
        make_splits(six, test_fraction=1.5)
    with pytest.raises(UserInputError, match="fold 5 out of range"):
        make_splits(six, n_folds=5).fold(5)


def test_digest_is_the_content_and_loading_refuses_leaking_splits(tmp_path):
    a = make_splits(SITES, seed=1)
    shuffled = Splits(seed=a.seed, test=a.test[::-1],
                      folds=[type(f)(train=f.train[::-1], val=f.val[::-1]) for f in a.folds])
    assert len(a.digest()) == 64 and shuffled.digest() == a.digest()  # order of ids is not content
    assert make_splits(SITES, seed=2).digest() != a.digest()
    swapped = Splits(seed=a.seed, test=a.test, folds=[a.folds[1], a.folds[0], *a.folds[2:]])
    assert swapped.digest() != a.digest()  # fold k names a model: fold order is content
    assert a.seen_by([0]) == set(a.folds[0].train) | set(a.folds[0].val)
    assert not a.seen_by() & set(a.test)

    leaking = json.loads(a.to_json())
    leaking["folds"][2]["train"].append(a.test[0])
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(leaking))
    with pytest.raises(UserInputError, match=f"test subject\\(s\\) {a.test[0]} in fold 2"):
        Splits.load(path)
    overlapping = json.loads(a.to_json())
    overlapping["folds"][0]["val"].append(overlapping["folds"][0]["train"][0])
    path.write_text(json.dumps(overlapping))
    with pytest.raises(UserInputError, match="fold 0 trains and validates on"):
        Splits.load(path)
    path.write_text('{"seed": 0}')
    with pytest.raises(UserInputError, match="not a splits file"):
        Splits.load(path)
