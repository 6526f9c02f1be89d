"""Search spaces: YAML in `search_spaces/<model>.yaml`, validated, turned into a define-by-run
Optuna space. Each dimension names a config key (as `--set` does):

    parameters:
      loss.lambda_jst: {type: float, low: 1.0e-4, high: 1.0, log: true}
      train.n_critic:  {type: int, low: 1, high: 5}
      train.batch_size: {type: categorical, choices: [32, 64, 128]}
    tpe:
      startup_trials: 5   # optional; Optuna's default 10
    asha:
      reduction_factor: 3  # optional; 2 by default

`tpe.startup_trials` is how many complete or pruned trials (trial 0 among them) Optuna's TPE
waits for before it models the results; until then it draws at random. `asha.reduction_factor` is
ASHA's: at each of its rungs (after fold 1, rf, rf², …) a trial goes on only if its running mean is
in the top 1/rf of those recorded there.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from mrisr_ray.config import Config, read_yaml, to_dict, with_overrides
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.errors import UserInputError
from mrisr_ray.registry import model_spec

TYPES = ("float", "int", "categorical")
OPTUNA_STARTUP_TRIALS = 10  # TPESampler's n_startup_trials when a space names none
ASHA_REDUCTION_FACTOR = 2  # when a space names none


@dataclass(frozen=True)
class Dimension:
    name: str  # config key, e.g. "loss.lambda_jst"
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        return self.low <= value <= self.high

    def ends(self) -> list:
        """The range's ends (every choice of a categorical): where validity is checked."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def describe(self) -> str:
        if self.type == "categorical":
            return f"{self.name} ∈ {list(self.choices)}"
        return f"{self.name} ∈ [{self.low:g}, {self.high:g}]{' log' if self.log else ''} ({self.type})"


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    dimensions: tuple[Dimension, ...]
    startup_trials: int  # random draws before TPE models (`tpe:`, else OPTUNA_STARTUP_TRIALS)
    reduction_factor: int  # ASHA keeps the top 1/rf at a rung (`asha:`, else ASHA_REDUCTION_FACTOR)

    def asha_rungs(self, folds: int) -> list[int]:
        """The folds after which ASHA (grace 1) may stop a trial of `folds`: 1, rf, rf², … before
        the last (Ray's rungs, less any at or after the last fold, where the trial ends anyway)."""
        rungs, fold = [], 1
        while fold < folds:
            rungs.append(fold)
            fold *= self.reduction_factor
        return rungs

    def define_by_run(self, trial) -> None:
        for dimension in self.dimensions:
            dimension.suggest(trial)

    def defaults(self, config: Config) -> dict[str, Any]:
        """The base config's value of every dimension (trial 0: the paper's configuration)."""
        # Plain values (tuples as lists), as the space's choices and Optuna's params hold them.
        flat, values = {}, to_dict(config)
        for d in self.dimensions:
            value: Any = values
            for key in d.name.split("."):
                value = value[key]
            if not d.contains(value):
                raise UserInputError(f"{self.path}: {d.name}: the default configuration's value "
                                     f"{value!r} lies outside the range, so trial 0 cannot run it")
            flat[d.name] = value
        return flat


def default_space_path(model: str) -> Path:
    return defaults_dir("search_spaces") / f"{model}.yaml"


def parse_dimension(path: Path, name: str, spec: Any) -> Dimension:
    where = f"{path}: {name}"
    if not isinstance(spec, dict):
        raise UserInputError(f"{where}: expected a mapping with type/low/high or choices")
    unknown = set(spec) - {"type", "low", "high", "log", "choices"}
    if unknown:
        raise UserInputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise UserInputError(f"{where}: type must be one of {', '.join(TYPES)}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserInputError(f"{where}: categorical needs a non-empty list of choices")
        return Dimension(name, kind, choices=tuple(choices))
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    number = int if kind == "int" else (int, float)
    for label, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number):
            raise UserInputError(f"{where}: {label} must be {'an integer' if kind == 'int' else 'a number'}"
                                 f", got {value!r}")
    if not low < high:
        raise UserInputError(f"{where}: empty range (low {low} must be below high {high})")
    if not isinstance(log, bool):
        raise UserInputError(f"{where}: log must be true or false")
    if log and low <= 0:
        raise UserInputError(f"{where}: a log range needs low > 0")
    return Dimension(name, kind, float(low), float(high), log)


def check_against_config(path: Path, dimension: Dimension, config: Config) -> None:
    """The key is one of the model's, and its range's ends (or every choice) are valid values of
    it: the config field's type and range (`validate`)."""
    for value in dimension.ends():
        try:
            with_overrides(config, {dimension.name: value})
        except UserInputError as exc:
            raise UserInputError(f"{path}: {dimension.name}: {value!r}: {exc}") from None
    if not model_spec(config.model).owns(dimension.name):
        raise UserInputError(f"{path}: {dimension.name}: not a setting of {config.model} (a search space "
                             f"for another model?)")


def check_pairs(path: Path, dimensions: list[Dimension], config: Config) -> None:
    """Every two keys together at their ends: a rule between two keys (train.lr_final <= train.lr)
    would otherwise refuse trials only once they run. `validate`'s rules between keys (today only
    that one) are monotone, so the ends suffice."""
    for i, first in enumerate(dimensions):
        for second in dimensions[i + 1:]:
            for a, b in product(first.ends(), second.ends()):
                try:
                    with_overrides(config, {first.name: a, second.name: b})
                except UserInputError as exc:
                    raise UserInputError(f"{path}: {first.name} {a!r} with {second.name} {b!r}: "
                                         f"{exc}") from None


def parse_setting(path: Path, section: str, key: str, minimum: int, spec: Any) -> int:
    """`<section>: {<key>: N}` (`tpe: {startup_trials: N}`, `asha: {reduction_factor: N}`) → N,
    an integer of at least `minimum`."""
    if not isinstance(spec, dict) or set(spec) != {key}:
        raise UserInputError(f"{path}: {section}: expected a mapping with one key, {key}")
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserInputError(f"{path}: {section}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def load_space(path: str | Path, config: Config) -> SearchSpace:
    path = Path(path)
    raw = read_yaml(path, "search space file")
    if not isinstance(raw, dict) or "parameters" not in raw or not raw["parameters"] \
            or not set(raw) <= {"parameters", "tpe", "asha"}:
        raise UserInputError(f"{path}: expected a top-level key 'parameters' with dimensions "
                             "(and optionally 'tpe' and 'asha')")
    dimensions = []
    for name, spec in raw["parameters"].items():
        dimension = parse_dimension(path, str(name), spec)
        check_against_config(path, dimension, config)
        dimensions.append(dimension)
    check_pairs(path, dimensions, config)
    startup = (parse_setting(path, "tpe", "startup_trials", 1, raw["tpe"]) if "tpe" in raw
               else OPTUNA_STARTUP_TRIALS)
    factor = (parse_setting(path, "asha", "reduction_factor", 2, raw["asha"]) if "asha" in raw
              else ASHA_REDUCTION_FACTOR)
    space = SearchSpace(path=path, dimensions=tuple(dimensions), startup_trials=startup,
                        reduction_factor=factor)
    space.defaults(config)
    return space
