"""BiLSTM-CRF named-entity tagger on the fused layers.

Each word is represented by its embedding, optionally embeddings of its casing and of further data
columns (POS, chunk), and the final states of a character-level BiLSTM run over its letters (packed: one
sequence per word); a multi-layer word-level BiLSTM runs over the sentence (packed: one sequence per
sentence); a linear layer gives per-tag emission scores, decoded by a linear-chain CRF constrained to
the tagging scheme, or by a per-token softmax.

With `document_context`, the emission layer also sees, for each word, the mean of the word-level BiLSTM's
outputs at the word's other occurrences in its document within the batch (the same normalised form, also
when it is unknown): "Costa" alone in a headline reads what "Jorge Costa" said further down. It needs the
data module's batch_by_document to see whole documents.
"""

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchmetrics.classification import MulticlassConfusionMatrix

import fusedrnn
from fusedrnn.lightning_modules.common.optim import adamw_with_schedule, check_lr_schedule
from fusedrnn.lightning_modules.conll_data import CASINGS
from fusedrnn.lightning_modules.crf import LinearChainCRF
from fusedrnn.lightning_modules.span_f1 import SpanF1
from fusedrnn.lightning_modules.tag_schemes import split_tag

UNK_ID = 1  # conll_data.Vocabulary's unknown-token id


class NERTagger(pl.LightningModule):
    """Args:
    words, chars, tags: the vocabularies, each one string of newline-separated entries (from
        ConllDataModule.vocabularies; saved in checkpoints). One string rather than a list because
        LightningCLI and load_from_checkpoint type-check a list item by item: minutes for 20k words.
    features: the feature columns' vocabularies, one line per column with space-separated entries ("" for
        none).
    scheme: IOB2 or BIOES, for CRF constraints and span F1.
    case_dim: size of the casing embedding (conll_data.casing: lower, Title, UPPER, ...); 0 leaves it out.
        It gives back what lowercased word embeddings lose, beside the character encoder.
    feature_dim: size of each feature column's embedding (e.g. CoNLL-2003's POS and chunk tags, chosen by
        the data module's feature_columns); 0 leaves them out.
    cell: "lstm" or "gru" for both encoders; backend: the fused layers' backend.
    decoder: "crf" or "softmax".
    word_dropout: probability of replacing a training word by the unknown token (teaches its embedding).
    document_context: also give the emission layer each word's mean BiLSTM output over its other
        occurrences in the document (zeros where there are none); see the module docstring.
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
    ):
        super().__init__()
        check_lr_schedule(lr_schedule)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if case_dim < 0 or feature_dim < 0:
            raise ValueError(f"case_dim and feature_dim must be >= 0, got {case_dim} and {feature_dim}")
        feature_sizes = [len(line.split(" ")) for line in features.split("\n")] if features else []
        if feature_dim and not feature_sizes:
            raise ValueError("feature_dim > 0 needs feature vocabularies: set the data module's feature_columns")
        if decoder not in ("crf", "softmax"):
            raise ValueError(f"decoder must be 'crf' or 'softmax', got {decoder!r}")
        self.save_hyperparameters()
        self.tag_names = tags.split("\n")
        tags = self.tag_names
        rnn = fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU
        self.word_embedding = nn.Embedding(len(words.split("\n")), word_dim, padding_idx=0)
        self.char_embedding = nn.Embedding(len(chars.split("\n")), char_dim, padding_idx=0)
        self.char_rnn = rnn(char_dim, char_hidden, bidirectional=True, batch_first=True, backend=backend)
        self.case_embedding = nn.Embedding(len(CASINGS) + 1, case_dim, padding_idx=0) if case_dim else None
        self.feature_embeddings = nn.ModuleList(
            nn.Embedding(size, feature_dim, padding_idx=0) for size in (feature_sizes if feature_dim else [])
        )
        word_features = word_dim + case_dim + len(self.feature_embeddings) * feature_dim + 2 * char_hidden
        self.word_rnn = rnn(
            word_features, hidden_size, num_layers, batch_first=True, bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0, backend=backend,
        )
        self.drop = nn.Dropout(dropout)
        self.emit = nn.Linear((4 if document_context else 2) * hidden_size, len(tags))
        self.crf = LinearChainCRF.for_tags(tags, scheme) if decoder == "crf" else None
        entity_types = sorted({split_tag(t)[1] for t in tags if t != "O"})
        self.span_f1 = nn.ModuleDict({stage: SpanF1(entity_types, scheme) for stage in ("val", "test")})
        self.confusion = MulticlassConfusionMatrix(len(tags))

    # ---- model -------------------------------------------------------------------------------------

    def emissions(self, batch, words: torch.Tensor | None = None) -> torch.Tensor:
        """A collated batch (conll_data.collate) -> emission scores (B, L, tags). `words` replaces the
        batch's word ids (training replaces some by the unknown token)."""
        words = batch["words"] if words is None else words
        chars, mask = batch["chars"], batch["mask"]
        B, L = words.shape
        real = mask.flatten()
        word_chars = chars.flatten(0, 1)[real]  # the words that exist, each a character sequence
        char_lengths = (word_chars != 0).sum(1).clamp_min(1)
        packed = pack_padded_sequence(
            self.char_embedding(word_chars), char_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.char_rnn(packed)
        final = state[0] if isinstance(state, tuple) else state  # (2, words, char_hidden)
        spelling = final.new_zeros(B * L, 2 * self.hparams.char_hidden)
        spelling[real] = torch.cat([final[0], final[1]], dim=1)
        features = [self.word_embedding(words), spelling.view(B, L, -1)]
        if self.case_embedding is not None:
            features.append(self.case_embedding(batch["cases"]))
        for k, embedding in enumerate(self.feature_embeddings):
            features.append(embedding(batch["features"][:, :, k]))
        x = torch.cat(features, dim=2)
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(self.drop(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.word_rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        if self.hparams.document_context:
            out = torch.cat([out, other_occurrences_mean(out, batch["forms"], mask)], dim=2)
        return self.emit(self.drop(out))

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.crf is not None:
            return self.crf(emissions, tags, mask)
        return F.cross_entropy(emissions[mask].float(), tags[mask])

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        best = emissions.argmax(-1)
        return [row[:n].tolist() for row, n in zip(best, mask.sum(1).tolist())]

    @torch.no_grad()
    def tag(self, batch) -> list[list[str]]:
        """Predicted tag strings for a collated batch (conll_data.collate)."""
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


def other_occurrences_mean(states: torch.Tensor, forms: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """For each real token, the mean of `states` (B, L, D) over the other tokens of the batch with the
    same form id (B, L); zeros where there is none, and at padding."""
    real = states[mask]
    distinct, group, counts = torch.unique(forms[mask], return_inverse=True, return_counts=True)
    sums = real.new_zeros(len(distinct), real.size(1)).index_add(0, group, real)
    others = (counts[group] - 1).unsqueeze(1)
    mean = (sums[group] - real) / others.clamp_min(1).to(real.dtype)
    out = states.new_zeros(states.shape)
    out[mask] = mean
    return out


def confusion_table(names: list[str], matrix: list[list[int]]) -> str:
    width = max(6, *(len(n) for n in names)) + 1
    lines = [" " * width + "".join(f"{n:>{width}}" for n in names)]
    lines += [f"{g:<{width}}" + "".join(f"{c:>{width}}" for c in row) for g, row in zip(names, matrix)]
    return "\n".join(lines)
