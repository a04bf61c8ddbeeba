"""`CharLMNet`: the character language model's network, embedding -> fused LSTM or GRU -> linear head,
and sampling from it step by step with the fused cells (or the layer itself, where the cells lack its options)."""

import torch
from torch import nn

import fusedrnn
from fusedrnn._backend import Backend


class CharLMNet(nn.Module):
    """Embedding -> fused LSTM or GRU -> linear head over `vocab_size` characters. The other arguments are
    those of the same names of `CharLM`, which documents them."""

    def __init__(
        self, vocab_size: int, cell: str, embedding_dim: int, hidden_size: int, num_layers: int, dropout: float,
        tie_weights: bool, backend: Backend, weight_drop: float = 0.0, recurrent_dropout: float = 0.0,
        zoneout: float = 0.0, layer_norm: bool = False,
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(
                f"tie_weights needs embedding_dim == hidden_size, got embedding_dim={embedding_dim} and "
                f"hidden_size={hidden_size}"
            )
        self.lstm = cell == "lstm"
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        rnn_class = fusedrnn.LSTM if self.lstm else fusedrnn.GRU
        # torch warns about dropout on a single layer, where it would have nothing to act between.
        self.rnn = rnn_class(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            backend=backend,
            weight_drop=weight_drop,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            layer_norm=layer_norm,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, ids: torch.Tensor, state=None):
        """ids (B, T) -> logits (B, T, V) and the final recurrent state."""
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        return self.head(self.drop(out)), state

    def cells(self) -> list[nn.Module]:
        """One fused cell per layer, holding that layer's very Parameter objects (no copies)."""
        cell_class = fusedrnn.LSTMCell if self.lstm else fusedrnn.GRUCell
        cells = []
        for k in range(self.rnn.num_layers):
            input_size = self.rnn.input_size if k == 0 else self.rnn.hidden_size
            # Built on the meta device: its own weights are replaced right away, so never allocated.
            cell = cell_class(input_size, self.rnn.hidden_size, device="meta", backend=self.rnn.backend)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, name, getattr(self.rnn, f"{name}_l{k}"))
            cells.append(cell)
        return cells

    @torch.no_grad()
    def sample(
        self, prime: torch.Tensor, length: int, temperature: float, top_k: int | None, generator: torch.Generator
    ) -> torch.Tensor:
        """`length` ids (length,) drawn after the ids `prime` (T,). The prime runs through the
        fused layer in one call; each new id then steps the fused cells, or the layer itself (a sequence of one)
        where the layer has zoneout or layer_norm, which the cells have not. Logits are divided by
        `temperature`; with `top_k`, only the k likeliest ids can be drawn. Dropout is the caller's to turn off."""
        out, state = self.rnn(self.embedding(prime[None]))
        logits = self.head(out[0, -1:])
        if self.rnn.zoneout or self.rnn.layer_norm:
            step = self._layer_step
        else:  # each layer's own state, as its cell takes it
            state = [(state[0][k], state[1][k]) if self.lstm else state[k] for k in range(self.rnn.num_layers)]
            step = self._cells_step(self.cells())
        sampled = []
        for i in range(length):
            next_id = _sample(logits, temperature, top_k, generator)
            sampled.append(next_id)
            if i == length - 1:
                break
            h, state = step(self.embedding(next_id), state)
            logits = self.head(h)
        return torch.cat(sampled) if sampled else prime.new_empty(0)

    def _layer_step(self, x: torch.Tensor, state):
        """x (1, E) through the layer as a sequence of one: (h (1, H), the layer's new state)."""
        out, state = self.rnn(x[None], state)
        return out[0], state

    def _cells_step(self, cells: list[nn.Module]):
        """A step like _layer_step through the fused cells, whose state is a list of each layer's."""

        def step(x: torch.Tensor, states: list):
            for k, cell in enumerate(cells):
                states[k] = cell(x, states[k])
                x = states[k][0] if self.lstm else states[k]
            return x, states

        return step


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> torch.Tensor:
    """One id per row of logits (B, V), drawn from softmax(logits / temperature) limited to the top k."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
