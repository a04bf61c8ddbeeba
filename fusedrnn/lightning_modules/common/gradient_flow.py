"""A callback that shows gradient flow through time while a model trains: every `every_n_steps` training
steps it records, in the backward kernels, ||dL/dh_t|| at every step of every fused RNN layer of the model
(fusedrnn.record_gradient_flow) and plots the mean norm against distance from the end of the backward pass,
one curve per layer and direction.

    fusedrnn charlm fit --config configs/charlm.yaml ... --trainer.callbacks+=GradientFlowPlot \\
        --trainer.callbacks.every_n_steps 200

Each plot goes to `<run folder>/gradient_flow/step<N>.png` and, with a W&B logger, to the run as the image
`gradient_flow`; each layer's decay, log10 of the mean norm at the farthest distance over that at distance 0,
is logged as `gradient_flow/<layer>/log10_decay`. Only the recorded steps pay for recording, and they run
the fused kernels (a Triton backend; "auto" runs the stepwise strategy where it would pick torch's).
"""

import math
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger

from fusedrnn.gradient_flow import GradientFlow
from fusedrnn.gradient_flow_plot import save_profiles


def curve_label(module: str, layer: int, direction: int) -> str:
    return f"{module or 'rnn'}.l{layer}" + (".reverse" if direction else "")


class GradientFlowPlot(pl.Callback):
    """Args:
        every_n_steps: record on the training steps whose global step is a multiple of this (the first too).
        out_dir: where the PNGs go; default `<trainer.log_dir or default_root_dir>/gradient_flow`.
    """

    def __init__(self, every_n_steps: int = 200, out_dir: str | None = None):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.out_dir = out_dir
        self._flow: GradientFlow | None = None
        self.saved: list[Path] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step % self.every_n_steps == 0 and self._flow is None:
            self._flow = GradientFlow(pl_module).__enter__()

    def on_after_backward(self, trainer, pl_module):
        if self._flow is None:
            return
        flow, self._flow = self._flow, None
        flow.__exit__(None, None, None)
        if not trainer.is_global_zero or not flow.records:
            return
        curves = {}
        for record in flow.records:  # the latest forward of each layer and direction
            curves[curve_label(record.module, record.layer, record.direction)] = record.profile()
        for label, profile in curves.items():
            finite = profile[profile.isfinite() & (profile > 0)]
            if len(finite) > 1:
                pl_module.log(f"gradient_flow/{label}/log10_decay", math.log10(finite[-1] / finite[0]))
        path = Path(self.out_dir or trainer.log_dir or trainer.default_root_dir) / "gradient_flow"
        path = save_profiles(curves, path / f"step{trainer.global_step:07d}.png",
                             f"gradient flow through time, step {trainer.global_step}")
        self.saved.append(path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="gradient_flow", images=[str(path)], step=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._flow is not None:  # no backward ran (a skipped step): stop recording
            self._flow.__exit__(None, None, None)
            self._flow = None
