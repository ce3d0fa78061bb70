"""Per-epoch checkpoints for exact resume, and MXNet's .params file format.

After every epoch the parameters, the optimizer state (with the optimizer itself, so update counts
survive), the rule's log so far and the metric rows so far go to a folder Snakemake does not
manage, so they survive a failed or killed job. A rerun continues after the last complete epoch; a
checkpoint of a different experiment configuration (another fingerprint) is ignored.
"""

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx

from .atomic import atomic_path

log = logging.getLogger(__name__)


def save_params(path: str | Path, arg_params: dict, aux_params: dict) -> None:
    """In mx.model.save_checkpoint's format ("arg:"/"aux:" prefixes), written atomically."""
    arrays = {f"arg:{k}": v for k, v in arg_params.items()} | {f"aux:{k}": v for k, v in aux_params.items()}
    with atomic_path(path) as partial:
        mx.nd.save(str(partial), arrays)


def load_params(path: str | Path) -> tuple[dict, dict]:
    """(arg_params, aux_params) of a .params file."""
    loaded = mx.nd.load(str(path))
    arg = {k[4:]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in loaded.items() if k.startswith("aux:")}
    return arg, aux


def fingerprint(settings: dict, num_classes: int) -> str:
    """Identifies what a checkpoint was trained for (a run's schema.training_settings), so a changed
    experiment starts afresh."""
    text = json.dumps({"experiment": settings, "num_classes": num_classes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def updater_of(module: mx.mod.Module):
    """The object that applies updates: the kvstore's when the kvstore updates, else the module's;
    None under dist_async, whose servers update."""
    return module._kvstore._updater if module._update_on_kvstore else module._updater  # noqa: SLF001


def current_optimizer(module: mx.mod.Module) -> mx.optimizer.Optimizer:
    """The optimizer in use (restoring a checkpoint replaces the updater's with the saved one)."""
    updater = updater_of(module)
    return updater.optimizer if updater else module._optimizer  # noqa: SLF001


@dataclass
class Checkpoints:
    folder: Path
    fingerprint: str

    @property
    def run_log(self) -> Path:
        """The rule's log, kept here: the rule's log file is a hard link to it, so the log lives on
        when a second Snakemake of the run deletes the rule's log before its job (and is refused)."""
        return self.folder / "train.log"

    def params_path(self, epoch: int) -> Path:
        return self.folder / f"model-{epoch:04d}.params"

    def states_path(self, epoch: int) -> Path:
        return self.folder / f"model-{epoch:04d}.states"

    def log_path(self, epoch: int) -> Path:
        """The rule's log as it was when epoch `epoch` was saved: a resumed attempt's log starts so."""
        return self.folder / f"train-{epoch:04d}.log"

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.json"

    def latest(self) -> tuple[int, list[dict]]:
        """(completed epochs, metric rows) to resume from; (0, []) for a fresh start."""
        if not self.progress_path.exists():
            return 0, []
        progress = json.loads(self.progress_path.read_text())
        if progress["fingerprint"] != self.fingerprint:
            log.warning(
                "%s: checkpoints are of another experiment configuration; starting afresh", self.folder
            )
            return 0, []
        return progress["epoch"], progress["rows"]

    def save(self, epoch: int, module: mx.mod.Module, rows: list[dict]) -> None:
        """Parameters and optimizer state first, the progress record last: it marks the epoch done."""
        save_params(self.params_path(epoch), *module.get_params())
        updater = updater_of(module)
        if updater:
            with atomic_path(self.states_path(epoch)) as partial:
                partial.write_bytes(updater.get_states(dump_optimizer=True))
        if self.run_log.exists():  # training outside a rule (run.open_logs) has none
            with atomic_path(self.log_path(epoch)) as partial:
                shutil.copyfile(self.run_log, partial)
        with atomic_path(self.progress_path) as partial:
            partial.write_text(json.dumps({"fingerprint": self.fingerprint, "epoch": epoch, "rows": rows}))
        if epoch > 1:  # keep the initial model (epoch 0) and the latest epoch only
            for path in (self.params_path, self.states_path, self.log_path):
                path(epoch - 1).unlink(missing_ok=True)

    def restore(self, epoch: int, module: mx.mod.Module) -> None:
        """Load the optimizer state saved after `epoch` into a module whose optimizer is set up."""
        updater = updater_of(module)
        if updater is None:
            log.warning("dist_async: the optimizer's state lives on the servers and restarts empty")
            return
        updater.set_states(self.states_path(epoch).read_bytes())
