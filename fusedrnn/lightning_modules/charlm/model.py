"""`CharLM`: a character language model on the fused recurrent layers, trained with truncated BPTT."""

import math
import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from fusedrnn._backend import Backend
from fusedrnn.lightning_modules.charlm.data import CharVocab
from fusedrnn.lightning_modules.charlm.net import CharLMNet
from fusedrnn.lightning_modules.common.checkpoints import load_model
from fusedrnn.lightning_modules.common.optim import adamw_with_schedule, check_lr_schedule
from fusedrnn.lightning_modules.common.wrapper import NetWrapper

LN2 = math.log(2)


def loss_metrics(prefix: str, nats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy in nats per character, bits per character and perplexity, keyed `prefix/...`."""
    return {f"{prefix}/loss": nats, f"{prefix}/bpc": nats / LN2, f"{prefix}/ppl": torch.exp(nats)}


class CharLM(NetWrapper):
    """Embedding -> fused LSTM or GRU -> linear head over the characters of `vocab`.

    The network is a `CharLMNet` (`self.net`); this module trains and samples it. The recurrent state is
    carried from batch to batch (detached, so gradients stop at the batch edge) and reset at the start of
    every epoch; the data must come as contiguous rows (`TextDataModule`).

    Args:
        vocab: the characters of the vocabulary, in id order (saved with the checkpoint).
        cell: "lstm" or "gru".
        embedding_dim: size of the character embeddings.
        hidden_size: size of the recurrent state.
        num_layers: stacked recurrent layers.
        dropout: on the embeddings, between recurrent layers and before the head.
        tie_weights: share the embedding matrix with the head (needs embedding_dim == hidden_size).
        weight_drop: DropConnect on the recurrent weights in training (AWD-LSTM's; fusedrnn.LSTM's option).
        recurrent_dropout: variational dropout on the state entering the recurrent product (fusedrnn.LSTM's).
        zoneout: in training each unit of h (and an LSTM's c) keeps its previous value at this rate, at evaluation
            and sampling the expectation (fusedrnn.LSTM's; sampling then steps the layer, not the cells).
        layer_norm: the layer-normalised LSTM or GRU (fusedrnn.LSTM's; its own parameters; sampling steps the layer).
        backend: the fused layers' backend: "auto" (Triton on CUDA), "triton-fusedstep", "triton" or "torch".
        lr: AdamW's (peak) learning rate.
        weight_decay: AdamW's decoupled weight decay.
        lr_schedule: "cosine" (linear warm-up, then cosine decay to min_lr_ratio * lr over the run),
            "plateau" (divide by 2 when val/loss stops falling) or "none".
        warmup_steps: optimizer steps of linear warm-up in the cosine schedule.
        min_lr_ratio: the cosine schedule's final learning rate, as a fraction of lr.
    """

    def __init__(
        self,
        vocab: str,
        cell: Literal["lstm", "gru"] = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.2,
        tie_weights: bool = False,
        backend: Backend = "auto",
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        lr_schedule: Literal["cosine", "plateau", "none"] = "cosine",
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        layer_norm: bool = False,
    ):
        super().__init__()
        check_lr_schedule(lr_schedule)
        self.save_hyperparameters()
        self.vocab = CharVocab(vocab)
        self.net = CharLMNet(
            len(self.vocab), cell, embedding_dim, hidden_size, num_layers, dropout, tie_weights, backend, weight_drop,
            recurrent_dropout, zoneout, layer_norm,
        )
        # The state carried between batches, per stage; never saved, reset each epoch.
        self._state: dict[str, object] = {}
        # MeanMetric weighted by character counts: the exact per-character mean, summed across processes.
        # (ModuleDict keys may not shadow Module attributes such as `train`, hence the suffix.)
        self.losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("train", "val", "test")})

    def forward(self, ids: torch.Tensor, state=None):
        """ids (B, T) -> logits (B, T, V) and the final recurrent state."""
        return self.net(ids, state)

    # ---- training and evaluation -------------------------------------------------------------------

    def _step(self, stage: str, batch) -> torch.Tensor:
        inputs, targets = batch
        state = self._state.get(stage)
        if state is not None and _batch_size(state) != inputs.size(0):
            state = None
        logits, state = self(inputs, state)
        # Truncated backpropagation through time: keep the values, drop the graph.
        self._state[stage] = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        self.losses[f"{stage}_loss"].update(loss.detach(), weight=targets.numel())
        return loss

    def num_tokens(self, batch) -> int:
        """Characters in a batch, for the throughput callback."""
        return batch[0].numel()

    def training_step(self, batch, batch_idx):
        loss = self._step("train", batch)
        self.log_dict(loss_metrics("train", loss.detach()), prog_bar=False)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx):
        self._step("val", batch)

    def test_step(self, batch, batch_idx):
        self._step("test", batch)

    def _start_epoch(self, stage: str) -> None:
        self._state.pop(stage, None)
        self.losses[f"{stage}_loss"].reset()

    def _end_epoch(self, stage: str, prefix: str) -> None:
        nats = self.losses[f"{stage}_loss"].compute()  # synchronised across processes
        self.losses[f"{stage}_loss"].reset()
        # The values are identical on every process already; sync_dist only keeps Lightning quiet.
        self.log_dict(loss_metrics(prefix, nats), sync_dist=True, prog_bar=stage == "val")

    def on_train_epoch_start(self):
        self._start_epoch("train")

    def on_train_epoch_end(self):
        self._end_epoch("train", "train_epoch")

    def on_validation_epoch_start(self):
        self._start_epoch("val")

    def on_validation_epoch_end(self):
        self._end_epoch("val", "val")

    def on_test_epoch_start(self):
        self._start_epoch("test")

    def on_test_epoch_end(self):
        self._end_epoch("test", "test")

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(
            self, lr=hp.lr, weight_decay=hp.weight_decay, schedule=hp.lr_schedule, monitor="val/loss",
            warmup_steps=hp.warmup_steps, min_lr_ratio=hp.min_lr_ratio,
        )

    # ---- sampling ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prime: str,
        length: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> str:
        """`prime` followed by `length` sampled characters.

        The prime runs through the fused layer in one call; each new character then steps the fused cells (the
        layer itself with zoneout or layer_norm). Logits are divided by `temperature`; with `top_k`, only the k
        likeliest characters can be drawn.
        """
        if not prime:
            raise ValueError("the prime string must not be empty: it starts the recurrence")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if length < 0:
            raise ValueError(f"length must be non-negative, got {length}")
        ids = self.vocab.encode(prime, what="the prime string").to(self.device)
        generator = torch.Generator(self.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        was_training = self.training
        self.eval()
        try:
            sampled = self.net.sample(ids, length, temperature, top_k, generator)
        finally:
            self.train(was_training)
        return prime + self.vocab.decode(sampled)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, backend: str | None = None, map_location="cpu") -> "CharLM":
        """A CharLM from a Lightning checkpoint alone (the vocabulary is among its hyperparameters).

        `backend` overrides the saved one, e.g. "torch" to sample on a CPU from a model trained with "triton".
        A missing file raises FileNotFoundError; anything but a CharLM checkpoint raises ValueError.
        """
        return load_model(cls, path, "vocab", "CharLM", backend, map_location)


def _batch_size(state) -> int:
    return (state[0] if isinstance(state, tuple) else state).size(1)

