"""The config's contract, workflow/schemas/config.schema.yaml, for code that builds a config or an
experiment without the workflow (benchmarks, tests): the same validation, the same defaults and the
same cross-checks (config_checks.py); and what of a run's config its results depend on.

A key the schema marks `neutral_default: true` was added after runs existed, and at its default
leaves training exactly as it was. A run's Snakemake params and its checkpoints' fingerprint hold
its `training_settings`, which leave such keys out while they are at their default: an upgrade that
adds one retrains nothing, and a run that sets one retrains (and starts afresh) as it should.

What else changes a run's results without changing its config (a default's value, a fix in the
training loop) bumps TRAINING_SEMANTICS: the settings then carry the new version, so every run
retrains once, deliberately. tests/test_semantics.py holds the schema's defaults of each version
and fails when they change without a bump."""

import copy
import functools
from pathlib import Path

import yaml
from snakemake.utils import validate

from .config_checks import check_config

CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
NEUTRAL = "neutral_default"
# The version of what training does with a given config. The runs trained before it existed are
# version 1, whose settings do not name it; a later version is a key of the settings.
TRAINING_SEMANTICS = 1
SEMANTICS_KEY = "training_semantics"


def validated_config(config: dict) -> dict:
    """A copy of `config`, validated and checked as the workflow does, with the schema's defaults."""
    config = copy.deepcopy(config)
    validate(config, str(CONFIG_SCHEMA), set_default=True)
    check_config(config)
    return config


def with_defaults(experiment: dict) -> dict:
    """A copy of `experiment`, validated and checked as a config's only experiment, with the schema's
    defaults filled in as the workflow fills them."""
    return validated_config({"experiments": {"experiment": experiment}})["experiments"]["experiment"]


def experiment_defaults(settings: dict) -> dict:
    """A run's whole config from its `training_settings`: validated, the schema's defaults filled in
    (no cross-checks: they need the other experiments, and the workflow ran them)."""
    experiment = {key: value for key, value in settings.items() if key != SEMANTICS_KEY}
    config = {"experiments": {"experiment": copy.deepcopy(experiment)}}
    validate(config, str(CONFIG_SCHEMA), set_default=True)
    return config["experiments"]["experiment"]


@functools.cache
def experiment_key_defaults() -> dict[tuple[str, ...], tuple[object, bool]]:
    """(key path in an experiment) -> (its default, whether it is marked neutral_default), of every
    experiment key with a default."""
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    found = {}

    def walk(properties: dict, path: tuple[str, ...]) -> None:
        for key, node in properties.items():
            if "default" in node:
                found[(*path, key)] = (node["default"], bool(node.get(NEUTRAL)))
            walk(node.get("properties", {}), (*path, key))

    walk(schema["$defs"]["experiment"]["properties"], ())
    return found


def neutral_defaults() -> dict[tuple[str, ...], object]:
    """(key path in an experiment) -> default, of every experiment key marked neutral_default."""
    return {path: default for path, (default, neutral) in experiment_key_defaults().items() if neutral}


def training_settings(experiment: dict) -> dict:
    """`experiment` (defaults filled in) without its neutral-default keys that are at their default,
    with the training semantics' version after the first."""
    settings = copy.deepcopy(experiment)
    for path, default in neutral_defaults().items():
        *parents, key = path
        holder = settings
        for parent in parents:
            holder = holder.get(parent, {})
        if key in holder and holder[key] == default:
            del holder[key]
    if TRAINING_SEMANTICS > 1:
        settings[SEMANTICS_KEY] = TRAINING_SEMANTICS
    return settings
