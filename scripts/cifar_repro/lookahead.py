"""airbench's lookahead (the experiment's `lookahead`): from `start_epoch` on, every `every_steps`
steps, an average of the net's parameters and BatchNorm statistics moves towards the net,

    average <- average + (1 - decay) (net - average),  decay = base^every_steps (step / total)^power,

and is copied back into the net; the first such step starts the average from the net. So the net
moves fast early and is averaged strongly late. At the end of every epoch the net is set to the
average, so a checkpoint holds the average too: a resumed run restarts it from the checkpoint's
parameters, exactly where an uninterrupted run has it.
"""

import mxnet as mx


def copies(arrays: dict[str, mx.nd.NDArray]) -> dict[str, mx.nd.NDArray]:
    return {name: array.copy() for name, array in arrays.items()}


class Lookahead:
    def __init__(self, settings: dict, batches_per_epoch: int, num_epochs: int):
        self.every, self.power = settings["every_steps"], settings["power"]
        self.base = settings["decay"] ** self.every
        self.batches = batches_per_epoch
        self.total = batches_per_epoch * num_epochs
        # the first step (counted from 1 over the whole run) that averages: a multiple of every_steps
        # in epoch start_epoch or later
        self.first_step = (settings["start_epoch"] * batches_per_epoch // self.every + 1) * self.every
        self.average: tuple[dict, dict] | None = None

    def resume(self, module: mx.mod.Module, begin_epoch: int) -> None:
        """After `begin_epoch` epochs restored from a checkpoint: if the average had started, it is
        the checkpoint's parameters."""
        if begin_epoch * self.batches >= self.first_step:
            self.average = tuple(copies(arrays) for arrays in module.get_params())

    def after_update(self, module: mx.mod.Module, epoch: int, number: int) -> None:
        """After the update of batch `number` (from 1) of `epoch` (from 0)."""
        step = epoch * self.batches + number
        if step < self.first_step or step % self.every:
            return
        # oneDNN's BatchNorm writes its moving statistics in the backward pass behind the engine's
        # back (see training.train): wait for every pending operation before reading them
        mx.nd.waitall()
        net = module.get_params()
        if self.average is None:
            self.average = tuple(copies(arrays) for arrays in net)
            return
        weight = 1 - self.base * (step / self.total) ** self.power
        for average, current in zip(self.average, net, strict=True):
            for name, value in average.items():
                value += (current[name] - value) * weight
        module.set_params(*self.average)  # copied into the module's own arrays

    def end_epoch(self, module: mx.mod.Module) -> None:
        if self.average is not None:
            module.set_params(*self.average)
