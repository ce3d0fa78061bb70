"""The config's contract, workflow/schemas/config.schema.yaml, for code that builds a config or an
experiment without the workflow (benchmarks, tests): the same validation, the same defaults and the
same cross-checks (config_checks.py)."""

import copy
from pathlib import Path

from snakemake.utils import validate

from .config_checks import check_config

CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def validated_config(config: dict) -> dict:
    """A copy of `config`, validated and checked as the workflow does, with the schema's defaults."""
    config = copy.deepcopy(config)
    validate(config, str(CONFIG_SCHEMA), set_default=True)
    check_config(config)
    return config


def with_defaults(experiment: dict) -> dict:
    """A copy of `experiment`, validated as a config's only experiment, with the schema's defaults
    filled in as the workflow fills them."""
    return validated_config({"experiments": {"experiment": experiment}})["experiments"]["experiment"]
