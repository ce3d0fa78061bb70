"""The layout contracts of the workflow: one script per rule, named after it; every choice list
written once, in the config schema, and the code's dispatch tables agreeing with it."""

import re

import yaml
from conftest import REPO

from cifar_repro import config_docs, networks

RULE = re.compile(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", re.MULTILINE)


def rules_and_scripts() -> dict[str, str | None]:
    """{rule: the script its script: directive names, or None for a rule without one}."""
    found = {}
    for smk in [REPO / "workflow" / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        for name, body in RULE.findall(smk.read_text()):
            script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", body)
            found[name] = script and script.group(1)
    return found


def test_every_rule_but_all_runs_the_script_named_after_it():
    scripts = rules_and_scripts()
    assert scripts.pop("all") is None
    assert {rule: script for rule, script in scripts.items() if script != f"../../scripts/{rule}.py"} == {}
    rule_scripts = {path.stem for path in (REPO / "scripts").glob("*.py")}
    assert rule_scripts == set(scripts), (
        "a script in scripts/ that no rule runs, or a rule without its script"
    )


def test_no_rule_runs_python_through_the_shell():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        assert "shell:" not in smk.read_text(), smk.name


def schema_choices(*path: str) -> list:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    node = schema
    for key in path:
        node = node[key]
    return node["enum"]


def test_the_networks_are_the_schemas():
    assert sorted(networks.NETWORKS) == sorted(schema_choices("$defs", "experiment", "properties", "network"))


def test_the_config_readme_holds_the_key_tables_of_the_schema():
    readme = (REPO / "config" / "README.md").read_text()
    assert config_docs.with_key_tables(readme, config_docs.load_schema()) == readme, (
        "config/README.md is stale: run `make config-docs`"
    )


def test_the_key_tables_show_every_key_choice_and_default():
    tables = config_docs.key_tables(config_docs.load_schema())
    for row in (
        "| `test_time_shift` | integer ≥ 0, ≤ 8 | `0` |",
        "| `distributed.kvstore` | `dist_sync`, `dist_device_sync`, `dist_async` | `dist_sync` |",
        "| `datasets.cifar10.md5` | string | required |",
        "| `gpu_lock_dir` | string | `/tmp/cifar-repro-gpu-locks` |",
        "| `figures.<name>.references[].accuracy` | number ≥ 0, ≤ 100 | required |",
    ):
        assert row in tables
    assert "when `network` is `resnext`: `50`, `101`, default `101`" in tables
    assert "when `distributed.kvstore` is `dist_async`: `fixed`" in tables
