"""`NERTagger`: the BiLSTM-CRF named-entity tagger on the fused layers.

`NERNet` (net.py) gives per-tag emission scores; they are decoded by a linear-chain CRF constrained to the
tagging scheme, or by a per-token softmax. The tagger trains them together and scores spans.
"""

import os

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from fusedrnn.lightning_modules.common.checkpoints import load_model
from fusedrnn.lightning_modules.common.optim import adamw_with_schedule, check_lr_schedule
from fusedrnn.lightning_modules.common.vocab import UNK
from fusedrnn.lightning_modules.common.wrapper import NetWrapper
from fusedrnn.lightning_modules.ner.crf import LinearChainCRF
from fusedrnn.lightning_modules.ner.data import NERVocab
from fusedrnn.lightning_modules.ner.net import NERNet
from fusedrnn.lightning_modules.ner.span_f1 import SpanF1
from fusedrnn.lightning_modules.ner.tag_schemes import split_tag

UNK_ID = NERVocab.specials.index(UNK)  # what word dropout puts in place of a word


class NERTagger(NetWrapper):
    """Args:
    words, chars, tags: the vocabularies, each one string of newline-separated entries (from
        ConllDataModule.vocabularies; saved in checkpoints). One string rather than a list because
        LightningCLI and load_from_checkpoint type-check a list item by item: minutes for 20k words.
    features: the feature columns' vocabularies, one line per column with space-separated entries ("" for
        none).
    scheme: IOB2 or BIOES, for CRF constraints and span F1.
    case_dim: size of the casing embedding (data.casing: lower, Title, UPPER, ...); 0 leaves it out.
        It gives back what lowercased word embeddings lose, beside the character encoder.
    feature_dim: size of each feature column's embedding (e.g. CoNLL-2003's POS and chunk tags, chosen by
        the data module's feature_columns); 0 leaves them out, and so do data without feature columns.
    cell: "lstm" or "gru" for both encoders; backend: the fused layers' backend.
    decoder: "crf" or "softmax".
    word_dropout: probability of replacing a training word by the unknown token (teaches its embedding).
    document_context: also give the emission layer each word's mean BiLSTM output over its other
        occurrences in the document (zeros where there are none); see net.py.
    weight_drop, recurrent_dropout, zoneout, layer_norm: the word-level BiLSTM's regularisers (fusedrnn.LSTM's
        options: DropConnect on W_hh, variational dropout on the recurrent state, zoneout of h and c, LayerNorm
        of the gate pre-activations and c), off by default.
    lr, weight_decay: AdamW settings; lr_schedule: "plateau" (halve lr when val/f1 stops rising), "cosine"
        (warm-up over warmup_steps, then cosine decay to 0 at the last step) or "none" (see optim.py).
    """

    def __init__(
        self,
        words: str,
        chars: str,
        tags: str,
        features: str = "",
        scheme: str = "IOB2",
        word_dim: int = 100,
        char_dim: int = 30,
        char_hidden: int = 50,
        case_dim: int = 0,
        feature_dim: int = 0,
        hidden_size: int = 200,
        num_layers: int = 1,
        dropout: float = 0.5,
        word_dropout: float = 0.05,
        document_context: bool = False,
        cell: str = "lstm",
        decoder: str = "crf",
        backend: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: str = "plateau",
        warmup_steps: int = 0,
        weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        layer_norm: bool = False,
    ):
        super().__init__()
        check_lr_schedule(lr_schedule)
        if decoder not in ("crf", "softmax"):
            raise ValueError(f"decoder must be 'crf' or 'softmax', got {decoder!r}")
        self.save_hyperparameters()
        self.tag_names = tags = tags.split("\n")
        feature_sizes = [len(line.split(" ")) for line in features.split("\n")] if features else []
        self.net = NERNet(
            len(words.split("\n")), len(chars.split("\n")), len(tags), feature_sizes, word_dim, char_dim,
            char_hidden, case_dim, feature_dim, hidden_size, num_layers, dropout, document_context, cell, backend,
            weight_drop, recurrent_dropout, zoneout, layer_norm,
        )
        self.crf = LinearChainCRF.for_tags(tags, scheme) if decoder == "crf" else None
        entity_types = sorted({split_tag(t)[1] for t in tags if t != "O"})
        # Gold entities of types the training data lacks count as missed (data.ConllDataModule.encode).
        self.span_f1 = nn.ModuleDict(
            {stage: SpanF1(entity_types, scheme, count_unseen=True) for stage in ("val", "test")}
        )
        self.confusion = MulticlassConfusionMatrix(len(tags))

    # ---- model -------------------------------------------------------------------------------------

    def emissions(self, batch, words: torch.Tensor | None = None) -> torch.Tensor:
        """A collated batch (data.collate) -> emission scores (B, L, tags); see NERNet.forward."""
        return self.net(batch, words)

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.crf is not None:
            return self.crf(emissions, tags, mask)
        return F.cross_entropy(emissions[mask].float(), tags[mask])

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        best = emissions.argmax(-1)
        return [row[:n].tolist() for row, n in zip(best, mask.sum(1).tolist())]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, backend: str | None = None, map_location="cpu") -> "NERTagger":
        """An NERTagger from a Lightning checkpoint alone (the vocabularies are among its hyperparameters; the data
        module's encoding options come as `saved_data_options`). `backend` overrides the saved one. A missing
        file raises FileNotFoundError; anything but an NERTagger checkpoint raises ValueError."""
        return load_model(cls, path, "tags", "NERTagger", backend, map_location)

    @torch.no_grad()
    def tag(self, batch) -> list[list[str]]:
        """Predicted tag strings for a collated batch (data.collate)."""
        paths = self.decode(self.emissions(batch), batch["mask"])
        return [[self.tag_names[i] for i in path] for path in paths]

    # ---- training and evaluation -------------------------------------------------------------------

    def num_tokens(self, batch) -> int:
        return int(batch["mask"].sum())

    def training_step(self, batch, batch_idx):
        words = batch["words"]
        if self.hparams.word_dropout > 0:
            drop = (torch.rand_like(words, dtype=torch.float) < self.hparams.word_dropout) & batch["mask"]
            words = torch.where(drop, torch.full_like(words, UNK_ID), words)
        loss = self.loss(self.emissions(batch, words), batch["tags"], batch["mask"])
        self.log("train/loss", loss, batch_size=words.size(0))
        return loss

    def _evaluate(self, stage: str, batch) -> None:
        mask = batch["mask"]
        emissions = self.emissions(batch)
        self.log(f"{stage}/loss", self.loss(emissions, batch["tags"], mask), batch_size=mask.size(0), sync_dist=True)
        paths = self.decode(emissions, mask)
        names = self.tag_names
        predicted = [[names[i] for i in p] for p in paths]
        gold = [[names[i] for i in row[:n]] for row, n in zip(batch["tags"].tolist(), mask.sum(1).tolist())]
        # Sentences with tags the training data lacks (read as O in `tags`) bring their true ones.
        gold = [true or ids for true, ids in zip(batch.get("gold") or [None] * len(gold), gold)]
        self.span_f1[stage].update(predicted, gold)
        if stage == "test":
            flat = torch.tensor([i for p in paths for i in p], device=mask.device)
            self.confusion.update(flat, batch["tags"][mask])

    def validation_step(self, batch, batch_idx):
        self._evaluate("val", batch)

    def test_step(self, batch, batch_idx):
        self._evaluate("test", batch)

    def _log_scores(self, stage: str) -> dict[str, torch.Tensor]:
        scores = self.span_f1[stage].compute()  # summed over processes
        self.span_f1[stage].reset()
        # The counts are summed over processes already; sync_dist only keeps Lightning quiet.
        self.log_dict({f"{stage}/{k}": v.float() for k, v in scores.items() if k != "f1"}, sync_dist=True)
        self.log(f"{stage}/f1", scores["f1"].float(), prog_bar=True, sync_dist=True)
        return scores

    def on_validation_epoch_end(self):
        self._log_scores("val")

    def on_test_epoch_end(self):
        self._log_scores("test")
        matrix = self.confusion.compute().tolist()
        self.confusion.reset()
        table = confusion_table(self.tag_names, matrix)
        if self.trainer.is_global_zero:
            print("\nToken-level confusion (rows: gold, columns: predicted)\n" + table)
            for logger in self.trainer.loggers:
                if hasattr(logger, "log_table"):
                    logger.log_table("test/confusion", columns=["gold"] + list(self.tag_names),
                                     data=[[g] + row for g, row in zip(self.tag_names, matrix)])

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(
            self, lr=hp.lr, weight_decay=hp.weight_decay, schedule=hp.lr_schedule, monitor="val/f1", mode="max",
            warmup_steps=hp.warmup_steps,
        )


def confusion_table(names: list[str], matrix: list[list[int]]) -> str:
    width = max(6, *(len(n) for n in names)) + 1
    lines = [" " * width + "".join(f"{n:>{width}}" for n in names)]
    lines += [f"{g:<{width}}" + "".join(f"{c:>{width}}" for c in row) for g, row in zip(names, matrix)]
    return "\n".join(lines)
