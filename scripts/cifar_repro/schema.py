"""The config's contract, workflow/schemas/config.schema.yaml, for code that builds an experiment
without the workflow (benchmarks, tests): the same validation and the same defaults."""

import copy
from pathlib import Path

from snakemake.utils import validate

CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def with_defaults(experiment: dict) -> dict:
    """A copy of `experiment`, validated as a config's experiment, with the schema's defaults filled
    in as the workflow fills them."""
    config = {"experiments": {"experiment": copy.deepcopy(experiment)}}
    validate(config, str(CONFIG_SCHEMA), set_default=True)
    return config["experiments"]["experiment"]
