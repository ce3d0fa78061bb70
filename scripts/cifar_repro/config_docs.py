"""config/README.md's key tables, generated from workflow/schemas/config.schema.yaml, the one source
of every key, type, bound, choice, default and description; a test checks that the README holds
what this module generates. After changing the schema, `make config-docs` runs

    PYTHONPATH=scripts python -m cifar_repro.config_docs config/README.md
"""

import sys
from pathlib import Path

import yaml

from .schema import CONFIG_SCHEMA

BEGIN = (
    "<!-- key tables: generated from workflow/schemas/config.schema.yaml by cifar_repro/config_docs.py -->"
)
END = "<!-- end of the generated key tables -->"
EXPERIMENT_REF = "#/$defs/experiment"


def shown(value) -> str:
    """A value as a config file writes it, in one line."""
    return (
        "`"
        + yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        + "`"
    )


def allowed(node: dict) -> str:
    """The values a key takes: its choices, or its type with its bounds."""
    if "enum" in node:
        return ", ".join(shown(choice) for choice in node["enum"])
    if "const" in node:
        return shown(node["const"])
    if "oneOf" in node and all("type" in option for option in node["oneOf"]):
        return " or ".join(allowed(option) for option in node["oneOf"])
    kind = node.get("type", "")
    bounds = [
        f"{sign} {node[key]}"
        for key, sign in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if key in node
    ]
    if kind == "array":
        items = node.get("items", {})
        kind = f"list of {allowed(items)}" if "type" in items or "enum" in items else "list"
        if node.get("minItems") and node.get("minItems") == node.get("maxItems"):
            kind += f", {node['minItems']} items"
    if kind == "object" and "properties" in node:
        kind = "mapping"
    return " ".join([kind, ", ".join(bounds)]).strip()


def conditions(node: dict) -> dict[str, list[str]]:
    """Key (relative to `node`) -> what the `allOf: [{if, then}]` clauses of `node` say of it."""
    said: dict[str, list[str]] = {}
    for clause in node.get("allOf", []):
        condition = clause["if"]
        when = "; ".join(
            f"`{key}` {'is ' + shown(test['const']) if 'const' in test else 'in ' + allowed(test)}"
            for key, test in flattened(condition.get("properties", {}))
        )
        then = clause["then"]
        for key in then.get("required", []):
            said.setdefault(key, []).append(f"required when {when}")
        for key in then.get("not", {}).get("required", []):
            said.setdefault(key, []).append(f"not allowed when {when}")
        for key, rule in flattened(then.get("properties", {})):
            text = allowed(rule) + (f", default {shown(rule['default'])}" if "default" in rule else "")
            said.setdefault(key, []).append(f"when {when}: {text}")
    return said


def flattened(properties: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """Nested `properties` clauses as (dotted key, innermost test)."""
    found = []
    for key, test in properties.items():
        if "properties" in test:
            found += flattened(test["properties"], f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", test))
    return found


def rows(
    node: dict, path: str, definitions: dict, required: bool, said: dict[str, list[str]]
) -> list[list[str]]:
    """Table rows for `node` at `path` and, below it, for every key it holds; `said`: what the
    conditions of the nodes above say of this one ("") and of the keys below it (dotted)."""
    if "$ref" in node:
        reference = node["$ref"]
        if reference == EXPERIMENT_REF:
            return [[f"`{path}`", "mapping", "", "one training run: the keys of the next table"]]
        node = definitions[reference.rsplit("/", 1)[-1]] | {k: v for k, v in node.items() if k != "$ref"}
    default = "required" if required else (shown(node["default"]) if "default" in node else "")
    notes = "; ".join(said.get("", []))
    description = ". ".join(filter(None, [node.get("description", "").strip().rstrip("."), notes]))
    found = [[f"`{path}`", allowed(node), default, description]] if path else []
    said = said | {key: said.get(key, []) + notes for key, notes in conditions(node).items()}
    own_required = set(node.get("required", []))

    def below(key: str) -> dict[str, list[str]]:
        return {inner.removeprefix(key).lstrip("."): notes for inner, notes in said.items()
                if inner == key or inner.startswith(f"{key}.")}  # fmt: skip

    for key, child in node.get("properties", {}).items():
        child_path = f"{path}.{key}" if path else key
        found += rows(child, child_path, definitions, key in own_required, below(key))
    for pattern, child in node.get("patternProperties", {}).items():
        found += rows(child, f"{path}.<name>", definitions, False, {"": [f"names matching `{pattern}`"]})
    if isinstance(node.get("additionalProperties"), dict):
        options = node["additionalProperties"].get("oneOf", [node["additionalProperties"]])
        for option in options:
            found += rows(option, f"{path}.<name>", definitions, False, {})
    items = node.get("items", {})
    for key, child in items.get("properties", {}).items():
        found += rows(child, f"{path}[].{key}", definitions, key in items.get("required", []), {})
    return found


def table(rows_: list[list[str]]) -> str:
    lines = ["| key | values | default | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join(
        lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows_]
    )


def key_tables(schema: dict) -> str:
    """The markdown between BEGIN and END: the top-level keys, then an experiment's."""
    definitions = schema["$defs"]
    top = rows(schema, "", definitions, False, {})
    experiment = rows(definitions["experiment"], "", definitions, False, {})
    return "\n\n".join([
        BEGIN,
        "### Top-level keys",
        table(top),
        "### Experiment keys (`experiments.<name>`)",
        table(experiment),
        END,
    ])  # fmt: skip


def load_schema(path: Path = CONFIG_SCHEMA) -> dict:
    return yaml.safe_load(path.read_text())


def with_key_tables(readme: str, schema: dict) -> str:
    """`readme` with its generated part replaced by the key tables of `schema`."""
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + key_tables(schema) + readme[end:]


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.write_text(with_key_tables(target.read_text(), load_schema()))
    print(f"{target}: key tables written from {CONFIG_SCHEMA}")
