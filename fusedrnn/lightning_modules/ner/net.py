"""`NERNet`: the tagger's network, from a collated batch of words to per-tag emission scores.

Each word is represented by its embedding, optionally embeddings of its casing and of further data
columns (POS, chunk), and the final states of a character-level BiLSTM run over its letters (packed: one
sequence per word); a multi-layer word-level BiLSTM runs over the sentence (packed: one sequence per
sentence); a linear layer gives per-tag emission scores.

With `document_context`, the emission layer also sees, for each word, the mean of the word-level BiLSTM's
outputs at the word's other occurrences in its document within the batch (the same normalised form, also
when it is unknown): "Costa" alone in a headline reads what "Jorge Costa" said further down. It needs
batches of whole documents (the data module's batch_by_document).
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn.lightning_modules.ner.data import CASINGS


class NERNet(nn.Module):
    """Emission scores from word ids, their characters, casings and feature ids (see the module docstring).

    num_words, num_chars, num_tags: vocabulary sizes (id 0 of words and characters is padding);
    feature_sizes: the vocabulary size of each feature column (none: no feature embeddings, whatever
    feature_dim). The other arguments are those of the same
    names of `NERTagger`, which documents them.
    """

    def __init__(
        self, num_words: int, num_chars: int, num_tags: int, feature_sizes: Sequence[int], word_dim: int,
        char_dim: int, char_hidden: int, case_dim: int, feature_dim: int, hidden_size: int, num_layers: int,
        dropout: float, document_context: bool, cell: str, backend: str | None, weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0, zoneout: float = 0.0, layer_norm: bool = False,
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if case_dim < 0 or feature_dim < 0:
            raise ValueError(f"case_dim and feature_dim must be >= 0, got {case_dim} and {feature_dim}")
        self.char_hidden, self.document_context = char_hidden, document_context
        rnn = fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU
        self.word_embedding = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.char_embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.char_rnn = rnn(char_dim, char_hidden, bidirectional=True, batch_first=True, backend=backend)
        self.case_embedding = nn.Embedding(len(CASINGS) + 1, case_dim, padding_idx=0) if case_dim else None
        self.feature_embeddings = nn.ModuleList(
            nn.Embedding(size, feature_dim, padding_idx=0) for size in (feature_sizes if feature_dim else [])
        )
        word_features = word_dim + case_dim + len(self.feature_embeddings) * feature_dim + 2 * char_hidden
        self.word_rnn = rnn(
            word_features, hidden_size, num_layers, batch_first=True, bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0, backend=backend, weight_drop=weight_drop,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout, layer_norm=layer_norm,
        )
        self.drop = nn.Dropout(dropout)
        self.emit = nn.Linear((4 if document_context else 2) * hidden_size, num_tags)

    def forward(self, batch, words: torch.Tensor | None = None) -> torch.Tensor:
        """A collated batch (data.collate) -> emission scores (B, L, tags). `words` replaces the batch's
        word ids (training replaces some by the unknown token)."""
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
        spelling = final.new_zeros(B * L, 2 * self.char_hidden)
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
        if self.document_context:
            out = torch.cat([out, other_occurrences_mean(out, batch["forms"], mask)], dim=2)
        return self.emit(self.drop(out))


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
