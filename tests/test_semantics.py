"""A finished run retrains only when what it depends on changed: the training semantics' version
guards the schema's defaults (schema.py), and the settings a run's params hold carry the version."""

import pytest

from cifar_repro import schema

# The experiment keys' defaults that each training-semantics version trained with. When the first
# test fails: a default whose value changed alters every run that relies on it, so bump
# schema.TRAINING_SEMANTICS and record the new version's defaults here; a new key that leaves
# training as it was at its default is marked `neutral_default: true` in the schema.
DEFAULTS_OF_VERSION = {
    1: {
        "augment": {},
        "augment.alternating_flip": False,
        "augment.pad": 0,
        "augment.rand_crop": False,
        "augment.rand_mirror": False,
        "augment.translate": 0,
        "disp_batches": 20,
        "distributed.kvstore": "dist_sync",
        "distributed.launcher": "local",
        "distributed.servers": 1,
        "gpus": 1,
        "init": {"type": "scratch"},
        "init.dirac": False,
        "init.freeze": [],
        "init.layer": "flatten0",
        "init.xavier": {"factor_type": "in", "magnitude": 2, "rnd_type": "gaussian"},
        "label_smoothing": 0,
        "loader_threads": 1,
        "lookahead.decay": 0.95,
        "lookahead.every_steps": 5,
        "lookahead.power": 3,
        "lookahead.start_epoch": 3,
        "lr_schedule": {"type": "fixed"},
        "mean_image": False,
        "optimizer_params": {},
        "param_multipliers": [],
        "precision": "fp32",
        "seed": 0,
        "test_time_flip": False,
        "test_time_shift": 0,
        "test_time_weighting": "uniform",
        "whitening.bias_epochs": 3,
    },
}

EXPERIMENT = {"dataset": "cifar10", "network": "resnet", "num_layers": 8, "data_shape": [3, 28, 28]}
EXPERIMENT |= {"batch_size": 32, "num_epochs": 4, "optimizer": "sgd"}


def test_the_schemas_defaults_are_those_of_the_training_semantics_version():
    recorded = DEFAULTS_OF_VERSION[schema.TRAINING_SEMANTICS]
    current = {".".join(path): entry for path, entry in schema.experiment_key_defaults().items()}
    changed = {
        key: (value, current[key][0])
        for key, value in recorded.items()
        if current.get(key, [None])[0] != value
    }
    assert not changed, f"defaults changed without a new TRAINING_SEMANTICS (was, now): {changed}"
    added = {key for key, (_, neutral) in current.items() if key not in recorded and not neutral}
    assert not added, f"new keys whose default is in every run's settings (retraining all): {added}"


def test_a_new_version_is_in_the_settings_and_the_resolved_config_leaves_it_out(monkeypatch):
    experiment = schema.with_defaults(EXPERIMENT)
    first = schema.training_settings(experiment)
    assert schema.SEMANTICS_KEY not in first  # the runs trained before versions existed keep their params
    monkeypatch.setattr(schema, "TRAINING_SEMANTICS", 2)
    bumped = schema.training_settings(experiment)
    assert bumped == first | {schema.SEMANTICS_KEY: 2}
    assert schema.experiment_defaults(bumped) == experiment


@pytest.mark.parametrize("path", sorted(schema.neutral_defaults()), ids=".".join)
def test_a_neutral_key_at_its_default_is_left_out_of_the_settings_and_restored_from_them(path):
    experiment = schema.with_defaults(EXPERIMENT | {"lookahead": {}})
    settings = schema.training_settings(experiment)
    holder = settings
    for parent in path[:-1]:
        holder = holder.get(parent, {})
    assert path[-1] not in holder
    assert schema.experiment_defaults(settings) == experiment


def test_a_neutral_key_set_to_another_value_stays_in_the_settings():
    experiment = schema.with_defaults(EXPERIMENT | {"precision": "auto"})
    assert schema.training_settings(experiment)["precision"] == "auto"
