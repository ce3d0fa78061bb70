import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

OUT = config["output_dir"].rstrip("/")
SCRIPTS = Path(workflow.basedir).parent / "scripts"
DATASETS = sorted(config["datasets"])
SPLITS = ["train", "test"]

# The rules' helpers share the scripts' own URL handling rather than restating it.
sys.path.insert(0, str(SCRIPTS))
from download import archive_name, local_source  # noqa: E402


wildcard_constraints:
    dataset="|".join(DATASETS),
    split="|".join(SPLITS),


def entry_script(name):
    """A rule's entry script, declared as an input so that editing it reruns the rule."""
    return str(SCRIPTS / name)


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def archive_path(wildcards):
    url = dataset_config(wildcards)["url"]
    return f"{OUT}/{wildcards.dataset}/download/{archive_name(url)}"


def local_archive_source(wildcards):
    """A local source archive is an input, so a rule can make it and a change to it is noticed."""
    source = local_source(dataset_config(wildcards)["url"])
    return [] if source is None else str(source)


def synthetic_options(wildcards):
    options = config["synthetic_archives"].get(wildcards.dataset)
    if options is None:
        raise ValueError(
            f"{wildcards.dataset}: no synthetic_archives.{wildcards.dataset} entry in the config"
        )
    return options


def data_targets():
    """Every artefact of the data chain, for every dataset."""
    targets = []
    for dataset in DATASETS:
        root = f"{OUT}/{dataset}"
        targets += expand(f"{root}/arrays/{{split}}.npz", split=SPLITS)
        targets += expand(f"{root}/images/{{split}}.lst", split=SPLITS)
        targets += expand(
            f"{root}/rec/{{split}}.{{ext}}", split=SPLITS, ext=["rec", "idx"]
        )
        targets += [
            f"{root}/mean_{height}x{width}.bin"
            for height, width in config["mean_image_sizes"]
        ]
    return targets


def figure_targets():
    return expand(f"{OUT}/figures/{{dataset}}_samples.png", dataset=DATASETS)
