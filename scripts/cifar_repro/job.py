"""A training job as one value: what the train rule hands the training loop, and what the launcher
of a distributed job writes to a file for each of its workers to read back."""

import json
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

from .devices import DeviceGrant
from .layout import PackedDataset, RunFiles, checkpoint_dir, distributed_dir, run_files, training_log


@dataclass(frozen=True)
class TrainingJob:
    run: str  # the run's name: an experiment's, or `<experiment>/seed<N>` of one of its seeds
    experiment: dict  # the run's resolved config (schema defaults filled in)
    data: PackedDataset
    outputs: RunFiles
    checkpoint_dir: str  # per-epoch checkpoints, kept across attempts
    log: str  # the rule's log: the job's progress, in MXNet's format
    granted: DeviceGrant  # each worker's, for a distributed job
    init_symbol: str | None = None  # the model it starts from, unless from scratch
    init_params: str | None = None
    whitening: str | None = None  # the stem's whitening filters, for an experiment with `whitening`

    @classmethod
    def under(cls, output_dir: str | Path, run: str, experiment: dict, data: PackedDataset) -> "TrainingJob":
        """A job that starts from scratch, with its files where the workflow puts them under
        `output_dir`, and the experiment's GPUs (benchmarks and tests run it without Snakemake)."""
        outputs = run_files(output_dir, run)
        Path(outputs.metrics).parent.mkdir(parents=True, exist_ok=True)
        return cls(
            run, experiment, data, outputs, checkpoint_dir(output_dir, run), training_log(output_dir, run),
            DeviceGrant(experiment["gpus"], [], f"{output_dir}/locks", allow_cpu_fallback=True),
        )  # fmt: skip

    @property
    def distributed(self) -> dict | None:
        """The experiment's `distributed` settings; None for a single process."""
        return self.experiment.get("distributed")

    @property
    def distributed_dir(self) -> str:
        return distributed_dir(self.checkpoint_dir)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainingJob":
        values = json.loads(text)
        return cls(**{
            field.name: field.type(**values[field.name]) if is_dataclass(field.type) else values[field.name]
            for field in fields(cls)
        })  # fmt: skip
