"""`Seq2Seq`: the attention encoder-decoder translation model, a LightningModule around `Seq2SeqNet`
(net.py: the architecture) that decodes with `Search` (search.py: greedy and beam search) and scores BLEU."""

import os
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.text import SacreBLEUScore

from fusedrnn._backend import Backend
from fusedrnn.lightning_modules.common.checkpoints import load_model
from fusedrnn.lightning_modules.common.optim import adamw_with_schedule
from fusedrnn.lightning_modules.common.wrapper import NetWrapper
from fusedrnn.lightning_modules.seq2seq.data import Seq2SeqVocab, detokenize, tokenize
from fusedrnn.lightning_modules.seq2seq.net import Seq2SeqNet
from fusedrnn.lightning_modules.seq2seq.search import Search


class Seq2Seq(NetWrapper):
    """Attention encoder-decoder for translation (see net.py for the architecture).

    Args:
        src_vocab, tgt_vocab: the vocabularies as `Seq2SeqVocab.to_text()` writes them: tokens in id order,
            specials first, one per line (saved with the checkpoint, so that it alone can translate;
            one string rather than a list, which the CLI's argument checks would walk item by item).
        cell: "gru" or "lstm", for encoder and decoder.
        embedding_dim: source and target embedding size.
        hidden_size: per encoder direction, and the decoder's state and attentional vector.
        num_layers: encoder layers (the decoder is one cell).
        attention: "additive" (Bahdanau) or "multiplicative" (Luong general).
        attention_size: the hidden size of additive scoring (unused by multiplicative).
        dropout: on embeddings, between encoder layers, and on attentional vectors before the output layer.
        label_smoothing: of the training cross-entropy (validation and test report the plain one).
        backend: the fused layers' backend: "auto" (Triton on CUDA), "triton-fusedstep", "triton" or "torch".
        lr, weight_decay: AdamW settings.
        lr_schedule: "plateau" (halve lr when val/loss stops falling) or "none" (see optim.py).
        val_beam_size: beam size for validation BLEU (1: greedy, the fastest).
        beam_size: beam size for test BLEU.
        length_penalty: beam hypotheses are ranked by log-probability / length ** length_penalty
            (1: mean log-probability per token, 0: plain sum).
        max_len_ratio, max_len_offset: a translation ends after ratio * source tokens + offset tokens.
        num_samples: sample translations (source, reference, hypothesis) per validation and test epoch
            in the W&B tables `val/samples` and `test/samples`.
    """

    def __init__(
        self,
        src_vocab: str,
        tgt_vocab: str,
        cell: Literal["gru", "lstm"] = "gru",
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 1,
        attention: Literal["additive", "multiplicative"] = "additive",
        attention_size: int = 256,
        dropout: float = 0.3,
        label_smoothing: float = 0.1,
        backend: Backend = "auto",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["plateau", "none"] = "plateau",
        val_beam_size: int = 1,
        beam_size: int = 5,
        length_penalty: float = 1.0,
        max_len_ratio: float = 1.5,
        max_len_offset: int = 5,
        num_samples: int = 8,
    ):
        super().__init__()
        if lr_schedule not in ("plateau", "none"):
            raise ValueError(f"lr_schedule must be one of ('plateau', 'none'), got {lr_schedule!r}")
        if beam_size < 1 or val_beam_size < 1:
            raise ValueError(f"beam sizes must be at least 1, got {beam_size} and {val_beam_size}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        # The vocabularies are long lists: in the checkpoint, not in the logger's config.
        self.save_hyperparameters(logger=False)
        self.src_vocab, self.tgt_vocab = Seq2SeqVocab.from_text(src_vocab), Seq2SeqVocab.from_text(tgt_vocab)
        self.net = Seq2SeqNet(
            len(self.src_vocab), len(self.tgt_vocab), self.tgt_vocab.pad, cell, embedding_dim, hidden_size,
            num_layers, attention, attention_size, dropout, backend,
        )

        # Exact per-token mean losses and corpus BLEU, summed across processes. SacreBLEU with its 13a
        # tokenization on detokenized text, lowercased because the model's vocabulary is.
        self.losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("val", "test")})
        self.bleu = nn.ModuleDict({stage: SacreBLEUScore(tokenize="13a", lowercase=True) for stage in ("val", "test")})
        self._samples: list[list[str]] = []  # this epoch's sample translations (source, reference, hypothesis)
        self._sample_rows: dict[str, list[list]] = {"val": [], "test": []}  # all epochs', for the W&B tables

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), src_lengths (B,), tgt_in (B, T) starting with bos -> logits (B, T, V)."""
        return self.net(src, src_lengths, tgt_in)

    # ---- training and evaluation -------------------------------------------------------------------

    def _loss(self, batch, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        tgt = batch["tgt"]
        logits = self(batch["src"], batch["src_lengths"], tgt[:, :-1])
        targets = tgt[:, 1:]
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            targets.flatten(),
            ignore_index=self.tgt_vocab.pad,
            label_smoothing=label_smoothing,
        )
        return loss, int((targets != self.tgt_vocab.pad).sum())

    def num_tokens(self, batch) -> int:
        """Source and target tokens in a batch (padding excluded), for the throughput callback."""
        return int(batch["src_lengths"].sum()) + int((batch["tgt"] != self.tgt_vocab.pad).sum())

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch, self.hparams.label_smoothing)
        self.log("train/loss", loss.detach(), batch_size=len(batch["src_text"]))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def _evaluate(self, stage: str, batch, beam_size: int) -> None:
        loss, n = self._loss(batch)
        self.losses[f"{stage}_loss"].update(loss.detach(), weight=n)
        hypotheses = self.translate_batch(batch["src"], batch["src_lengths"], beam_size)
        self.bleu[stage].update(hypotheses, [[ref] for ref in batch["tgt_text"]])
        room = self.hparams.num_samples - len(self._samples)
        self._samples += [list(row) for row in zip(batch["src_text"], batch["tgt_text"], hypotheses)][:room]

    def validation_step(self, batch, batch_idx):
        self._evaluate("val", batch, self.hparams.val_beam_size)

    def test_step(self, batch, batch_idx):
        self._evaluate("test", batch, self.hparams.beam_size)

    def on_validation_epoch_start(self):
        self._samples = []

    def on_test_epoch_start(self):
        self._samples = []

    def _end_epoch(self, stage: str) -> None:
        nats = self.losses[f"{stage}_loss"].compute()  # synchronised across processes
        bleu = self.bleu[stage].compute()
        self.losses[f"{stage}_loss"].reset()
        self.bleu[stage].reset()
        # The values are identical on every process already; sync_dist only keeps Lightning quiet.
        metrics = {f"{stage}/loss": nats, f"{stage}/ppl": torch.exp(nats), f"{stage}/bleu": 100 * bleu}
        self.log_dict(metrics, sync_dist=True, prog_bar=True)
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        # W&B tables `val/samples` and `test/samples`: the first num_samples translations of each epoch.
        epoch, step = self.trainer.current_epoch, self.trainer.global_step
        self._sample_rows[stage] += [[epoch, step, *row] for row in self._samples]
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                # A W&B table is immutable once logged: log the whole history each time.
                columns = ["epoch", "step", "source", "reference", "hypothesis"]
                logger.log_table(f"{stage}/samples", columns=columns, data=self._sample_rows[stage])

    def on_validation_epoch_end(self):
        self._end_epoch("val")

    def on_test_epoch_end(self):
        self._end_epoch("test")

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(
            self, lr=hp.lr, weight_decay=hp.weight_decay, schedule=hp.lr_schedule, monitor="val/loss"
        )

    # ---- decoding ----------------------------------------------------------------------------------

    @property
    def search(self) -> Search:
        hp = self.hparams
        return Search(self.net, self.tgt_vocab, hp.length_penalty, hp.max_len_ratio, hp.max_len_offset)

    def greedy(self, src: torch.Tensor, src_lengths: torch.Tensor) -> list[list[int]]:
        return self.search.greedy(src, src_lengths)

    def beam_search(self, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int) -> list[list[int]]:
        return self.search.beam_search(src, src_lengths, beam_size)

    def sequence_scores(self, src: torch.Tensor, src_lengths: torch.Tensor, hypotheses: list[list[int]]) -> list[float]:
        """What beam search maximises for each hypothesis (Search.sequence_scores), without dropout."""
        with self._evaluating():
            return self.search.sequence_scores(src, src_lengths, hypotheses)

    @contextmanager
    def _evaluating(self):
        """Eval mode (no dropout) for the duration, then the previous mode back."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @torch.no_grad()
    def translate_batch(self, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int = 1) -> list[str]:
        """Detokenized translations of a padded batch of source ids: greedy for beam_size 1, else beam search."""
        with self._evaluating():
            ids = self.greedy(src, src_lengths) if beam_size == 1 else self.beam_search(src, src_lengths, beam_size)
        return [detokenize(self.tgt_vocab.decode(h)) for h in ids]

    def translate(self, sentences: list[str], beam_size: int = 1, batch_size: int = 64) -> list[str]:
        """Translations of raw source sentences, in order (tokenized like the training data; unknown
        words become unk; an empty line translates too)."""
        vocab = self.src_vocab
        encoded = [torch.tensor(vocab.encode(tokenize(s)) + [vocab.eos]) for s in sentences]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths together
        out: list[str] = [""] * len(encoded)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            src = nn.utils.rnn.pad_sequence([encoded[i] for i in chunk], batch_first=True, padding_value=vocab.pad)
            lengths = torch.tensor([len(encoded[i]) for i in chunk])
            for i, text in zip(chunk, self.translate_batch(src.to(self.device), lengths, beam_size)):
                out[i] = text
        return out

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, backend: str | None = None, map_location="cpu") -> "Seq2Seq":
        """A Seq2Seq from a Lightning checkpoint alone (the vocabularies are among its hyperparameters).

        `backend` overrides the saved one (e.g. "torch" on a CPU). A missing file raises
        FileNotFoundError; anything but a Seq2Seq checkpoint raises ValueError.
        """
        return load_model(cls, path, "src_vocab", "Seq2Seq translation", backend, map_location)
