"""`Seq2SeqNet`: the attention encoder-decoder network.

Encoder: embeddings -> bidirectional fused GRU/LSTM over the packed source. Bridge: the final states of
both directions -> the decoder's initial state. Decoder: one fused GRUCell/LSTMCell step per target
token; its input is the previous token's embedding concatenated with the previous attentional vector
(input feeding). After each step the new decoder state attends over the encoder outputs (additive or
multiplicative scores, padded positions masked), and `tanh(W [state; context])` -- the attentional
vector -- feeds the output layer and the next step (Luong et al.'s architecture; the attention
setting picks only the score function).
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn._backend import Backend

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # the decoder state: GRU h, or LSTM (h, c)


class Attention(nn.Module):
    """Scores of a query (B, Q) against keys (B, S, K), softmax over the unmasked positions, and the
    weighted sum of the keys.

    additive (Bahdanau): score_j = v . tanh(W_q q + W_k k_j); multiplicative (Luong "general"):
    score_j = q . (W k_j). `prepare` projects the keys once per sentence; `forward` runs every step.
    """

    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.kind = kind
        if kind == "additive":
            self.key_proj = nn.Linear(key_size, attention_size, bias=False)
            self.query_proj = nn.Linear(query_size, attention_size)
            self.v = nn.Linear(attention_size, 1, bias=False)
        else:
            self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key_proj(keys)

    def forward(self, query, keys, projected_keys, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), keys (B, S, K), projected_keys from prepare(), mask (B, S) True where real
        -> context (B, K), weights (B, S)."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(projected_keys + self.query_proj(query)[:, None])).squeeze(-1)
        else:
            scores = torch.bmm(projected_keys, query[:, :, None]).squeeze(-1)
        weights = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1).to(keys.dtype)
        return torch.bmm(weights[:, None], keys).squeeze(1), weights


class Memory:
    """What the decoder reads at every step: encoder outputs (B, S, 2H), their projections for attention,
    and the mask of real source positions (B, S). `repeat(k)` gives each sentence k consecutive rows."""

    def __init__(self, outputs: torch.Tensor, projected: torch.Tensor, mask: torch.Tensor):
        self.outputs, self.projected, self.mask = outputs, projected, mask

    def repeat(self, k: int) -> "Memory":
        return Memory(*(t.repeat_interleave(k, dim=0) for t in (self.outputs, self.projected, self.mask)))


class Seq2SeqNet(nn.Module):
    """The encoder-decoder of the module docstring over vocabularies of `src_vocab_size` and `tgt_vocab_size`
    tokens, `pad` the padding id of both. The other arguments are those of the same names of `Seq2Seq`,
    which documents them."""

    def __init__(
        self, src_vocab_size: int, tgt_vocab_size: int, pad: int, cell: str, embedding_dim: int, hidden_size: int,
        num_layers: int, attention: str, attention_size: int, dropout: float, backend: Backend,
    ):
        super().__init__()
        for name, value, allowed in (
            ("cell", cell, ("gru", "lstm")),
            ("attention", attention, ("additive", "multiplicative")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.hidden_size = H = hidden_size
        self.lstm = cell == "lstm"
        rnn_class, cell_class = (fusedrnn.LSTM, fusedrnn.LSTMCell) if self.lstm else (fusedrnn.GRU, fusedrnn.GRUCell)
        self.src_embedding = nn.Embedding(src_vocab_size, embedding_dim, padding_idx=pad)
        self.encoder = rnn_class(
            embedding_dim,
            H,
            num_layers=num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # torch warns about dropout with nothing to act between
            backend=backend,
        )
        self.bridge = nn.Linear(2 * H, H)
        self.bridge_cell = nn.Linear(2 * H, H) if self.lstm else None
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embedding_dim, padding_idx=pad)
        self.decoder = cell_class(embedding_dim + H, H, backend=backend)
        self.attention = Attention(attention, H, 2 * H, attention_size)
        self.combine = nn.Linear(H + 2 * H, H, bias=False)
        self.output = nn.Linear(H, tgt_vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, State]:
        """src (B, S) padded ids, src_lengths (B,) -> the decoder's Memory and initial state."""
        embedded = self.drop(self.src_embedding(src))
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.encoder(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        # The last layer's final states, forward and backward direction side by side: (B, 2H).
        h_n = final[0] if self.lstm else final
        state = torch.tanh(self.bridge(torch.cat([h_n[-2], h_n[-1]], dim=-1)))
        if self.lstm:
            c_n = final[1]
            state = (state, self.bridge_cell(torch.cat([c_n[-2], c_n[-1]], dim=-1)))
        mask = torch.arange(src.size(1), device=src.device)[None] < src_lengths.to(src.device)[:, None]
        return Memory(outputs, self.attention.prepare(outputs), mask), state

    def initial_feed(self, batch_size: int) -> torch.Tensor:
        """The attentional vector fed to the first step: zeros."""
        return self.output.weight.new_zeros(batch_size, self.hidden_size)

    def step(self, tokens: torch.Tensor, state: State, feed: torch.Tensor, memory: Memory):
        """One decoder step: tokens (N,) the previous target ids, feed (N, H) the previous attentional
        vector -> (the new state, the new attentional vector (N, H)); logits are self.output(attentional)."""
        x = torch.cat([self.drop(self.tgt_embedding(tokens)), feed], dim=-1)
        state = self.decoder(x, state)
        h = state[0] if self.lstm else state
        context, _ = self.attention(h, memory.outputs, memory.projected, memory.mask)
        attentional = torch.tanh(self.combine(torch.cat([h, context], dim=-1)))
        return state, attentional

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), src_lengths (B,), tgt_in (B, T) starting with bos -> logits (B, T, V)."""
        memory, state = self.encode(src, src_lengths)
        feed = self.initial_feed(src.size(0))
        attentionals = []
        for t in range(tgt_in.size(1)):
            state, feed = self.step(tgt_in[:, t], state, feed, memory)
            attentionals.append(feed)
        # One output projection for all steps: a single large GEMM.
        return self.output(self.drop(torch.stack(attentionals, dim=1)))

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return tuple(s.index_select(0, rows) for s in state) if self.lstm else state.index_select(0, rows)
