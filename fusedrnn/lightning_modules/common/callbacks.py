"""Training callbacks shared by the models: token throughput, gradient norm, peak GPU memory, a table of
generated samples."""

import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn


def _count_tokens(pl_module: pl.LightningModule, batch) -> int:
    # Models with padding define num_tokens(batch); otherwise the first tensor of the batch counts.
    if hasattr(pl_module, "num_tokens"):
        return pl_module.num_tokens(batch)
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return first.numel()


class TokenThroughput(pl.Callback):
    """Logs `train/tokens_per_sec`, summed over processes, averaged over each logging window
    (trainer.log_every_n_steps batches, data loading included)."""

    def _start_window(self) -> None:
        self._start = time.perf_counter()
        self._tokens = 0
        self._batches = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start_window()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._tokens += _count_tokens(pl_module, batch)
        self._batches += 1
        if self._batches < trainer.log_every_n_steps:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # kernels run asynchronously: wait for them
        elapsed = time.perf_counter() - self._start
        # Every process reaches this batch together: the sum over processes is the job's throughput.
        pl_module.log("train/tokens_per_sec", self._tokens / elapsed, sync_dist=True, reduce_fx="sum")
        self._start_window()


class GradNorm(pl.Callback):
    """Logs `train/grad_norm`: the global norm of the gradients before clipping (the norm the clipping
    threshold is compared with; Lightning calls this hook before it clips)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        norms = [p.grad.detach().norm() for p in pl_module.parameters() if p.grad is not None]
        if norms:
            pl_module.log("train/grad_norm", torch.stack(norms).norm())


class PeakMemory(pl.Callback):
    """Logs `train/peak_memory_gib`: the most GPU memory torch held on any one device since the epoch
    began (the largest over processes). Nothing on CPU runs."""

    def on_train_epoch_start(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda" and (batch_idx + 1) % trainer.log_every_n_steps == 0:
            peak = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            pl_module.log("train/peak_memory_gib", peak, sync_dist=True, reduce_fx="max")


class TextSampleTable(pl.Callback):
    """After each validation epoch, samples text with `pl_module.generate(prime, length, ...)` and logs
    it: a W&B table `samples` that grows by a row per epoch, or a TensorBoard text entry.

    Args:
        prime: the text the samples start from. Characters outside the model's vocabulary are dropped with
            a warning (a config written for one text still trains on another).
        length: characters to generate.
        temperature: divides the logits before sampling.
        top_k: when set, only the k likeliest characters can be drawn.
        seed: makes the samples of successive epochs comparable.
    """

    columns = ["epoch", "step", "temperature", "top_k", "text"]

    def __init__(
        self, prime: str = "\n", length: int = 200, temperature: float = 0.8, top_k: int | None = None, seed: int = 0
    ):
        self.prime = prime
        self.length = length
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self.rows: list[list] = []

    def setup(self, trainer, pl_module, stage):
        self._prime = self.prime
        vocab = getattr(pl_module, "vocab", None)
        if vocab is not None:
            known = "".join(c for c in self.prime if c in vocab.chars)
            if known != self.prime:
                self._prime = known or vocab.chars[0]
                rank_zero_warn(
                    f"{type(self).__name__}: the prime {self.prime!r} has characters outside the vocabulary; "
                    f"sampling from {self._prime!r} instead"
                )

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero or not trainer.loggers:
            return
        text = pl_module.generate(self._prime, self.length, self.temperature, self.top_k, self.seed)
        self.rows.append([trainer.current_epoch, trainer.global_step, self.temperature, self.top_k, text])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # A W&B table is immutable once logged: log the whole history each time.
                logger.log_table("samples", columns=self.columns, data=self.rows)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("samples", text, global_step=trainer.global_step)
