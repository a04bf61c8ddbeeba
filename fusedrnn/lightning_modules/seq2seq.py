"""`Seq2Seq`: an attention encoder-decoder translation model on the fused recurrent layers.

Encoder: embeddings -> bidirectional fused GRU/LSTM over the packed source. Bridge: the final states of
both directions -> the decoder's initial state. Decoder: one fused GRUCell/LSTMCell step per target
token; its input is the previous token's embedding concatenated with the previous attentional vector
(input feeding). After each step the new decoder state attends over the encoder outputs (additive or
multiplicative scores, padded positions masked), and `tanh(W [state; context])` -- the attentional
vector -- feeds the output layer and the next step (Luong et al.'s architecture; the attention
setting picks only the score function).
"""

import os
from contextlib import contextmanager
from typing import Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchmetrics import MeanMetric
from torchmetrics.text import SacreBLEUScore

import fusedrnn
from fusedrnn._backend import Backend
from fusedrnn.lightning_modules.common.checkpoints import load_model
from fusedrnn.lightning_modules.common.optim import adamw_with_schedule
from fusedrnn.lightning_modules.parallel_data import Vocab, detokenize, tokenize

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


class Seq2Seq(pl.LightningModule):
    """Attention encoder-decoder for translation (see the module docstring for the architecture).

    Args:
        src_vocab, tgt_vocab: the vocabularies as `Vocab.to_text()` writes them: tokens in id order,
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
        for name, value, allowed in (
            ("cell", cell, ("gru", "lstm")),
            ("attention", attention, ("additive", "multiplicative")),
            ("lr_schedule", lr_schedule, ("plateau", "none")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if beam_size < 1 or val_beam_size < 1:
            raise ValueError(f"beam sizes must be at least 1, got {beam_size} and {val_beam_size}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        # The vocabularies are long lists: in the checkpoint, not in the logger's config.
        self.save_hyperparameters(logger=False)
        self.src_vocab, self.tgt_vocab = Vocab.from_text(src_vocab), Vocab.from_text(tgt_vocab)
        self.lstm = cell == "lstm"
        rnn_class, cell_class = (fusedrnn.LSTM, fusedrnn.LSTMCell) if self.lstm else (fusedrnn.GRU, fusedrnn.GRUCell)
        H = hidden_size

        self.src_embedding = nn.Embedding(len(self.src_vocab), embedding_dim, padding_idx=self.src_vocab.pad)
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
        self.tgt_embedding = nn.Embedding(len(self.tgt_vocab), embedding_dim, padding_idx=self.tgt_vocab.pad)
        self.decoder = cell_class(embedding_dim + H, H, backend=backend)
        self.attention = Attention(attention, H, 2 * H, attention_size)
        self.combine = nn.Linear(H + 2 * H, H, bias=False)
        self.output = nn.Linear(H, len(self.tgt_vocab))
        self.drop = nn.Dropout(dropout)

        # Exact per-token mean losses and corpus BLEU, summed across processes. SacreBLEU with its 13a
        # tokenization on detokenized text, lowercased because the model's vocabulary is.
        self.losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("val", "test")})
        self.bleu = nn.ModuleDict({stage: SacreBLEUScore(tokenize="13a", lowercase=True) for stage in ("val", "test")})
        self._samples: list[list[str]] = []  # this epoch's sample translations (source, reference, hypothesis)
        self._sample_rows: dict[str, list[list]] = {"val": [], "test": []}  # all epochs', for the W&B tables

    # ---- encoder and one decoder step --------------------------------------------------------------

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
        return self.output.weight.new_zeros(batch_size, self.hparams.hidden_size)

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
    # Every translation ends in eos: a sentence at its length limit gets eos as its last token. So a
    # hypothesis's score is always the model's log-probability of the tokens and the eos after them.

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """The most tokens (eos included) a translation of each source may have."""
        hp = self.hparams
        return torch.ceil(src_lengths.float() * hp.max_len_ratio).long() + hp.max_len_offset

    def next_log_probs(self, attentional: torch.Tensor, at_limit: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) of the next token, -inf for tokens decoding never produces: pad and
        bos anywhere, and all but eos in rows at their length limit (at_limit (N,) bool)."""
        log_probs = torch.log_softmax(self.output(attentional).float(), dim=-1)
        vocab = self.tgt_vocab
        banned = torch.zeros_like(log_probs, dtype=torch.bool)
        banned[:, [vocab.pad, vocab.bos]] = True
        banned |= at_limit[:, None] & (torch.arange(len(vocab), device=banned.device) != vocab.eos)
        return log_probs.masked_fill(banned, float("-inf"))

    def _select_state(self, state: State, rows: torch.Tensor) -> State:
        return tuple(s.index_select(0, rows) for s in state) if self.lstm else state.index_select(0, rows)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_lengths: torch.Tensor) -> list[list[int]]:
        """The likeliest next token at every step, until eos. Returns target ids per sentence, eos excluded."""
        memory, state = self.encode(src, src_lengths)
        B = src.size(0)
        limits = self.max_lengths(src_lengths).to(src.device)
        tokens = torch.full((B,), self.tgt_vocab.bos, dtype=torch.long, device=src.device)
        feed = self.initial_feed(B)
        outputs: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        for t in range(int(limits.max())):
            state, feed = self.step(tokens, state, feed, memory)
            tokens = self.next_log_probs(feed, limits <= t + 1).argmax(dim=-1)
            for b, token in enumerate(tokens.tolist()):
                if not done[b]:
                    done[b] = token == self.tgt_vocab.eos
                    outputs[b] += [] if done[b] else [token]
            if all(done):
                break
        return outputs

    def normalized(self, log_prob: float, length: int) -> float:
        """The score by which beam search ranks a hypothesis of `length` tokens (eos included)."""
        return log_prob / max(length, 1) ** self.hparams.length_penalty

    def _settled(self, finished: list, best_live_score: float, length: int, k: int) -> bool:
        """Whether beam search may stop: k hypotheses have finished and the best live one, scored as if
        it ended now, does not beat the best finished."""
        return len(finished) >= k and self.normalized(best_live_score, length) <= max(f[0] for f in finished)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int) -> list[list[int]]:
        """Beam search over all sentences at once (each has `beam_size` rows).

        Every step extends each live hypothesis by every token and ranks the extensions per sentence by
        summed log-probability: an extension by eos among the best k becomes a finished hypothesis, the
        best k others stay live. A sentence is done when it has k finished hypotheses and its best live
        one, scored as if it ended now, does not beat the best finished (or when none is live, as after
        its length limit). The best finished hypothesis by `normalized` score wins; with k = 1 this is
        greedy decoding. Returns target ids per sentence, eos excluded.
        """
        K = beam_size
        B = src.size(0)
        memory, state = self.encode(src, src_lengths)
        memory = memory.repeat(K)
        state = self._select_state(state, torch.arange(B, device=src.device).repeat_interleave(K))
        feed = self.initial_feed(B * K)
        tokens = torch.full((B * K,), self.tgt_vocab.bos, dtype=torch.long, device=src.device)
        limits = self.max_lengths(src_lengths).to(src.device).repeat_interleave(K)
        # Only the first of a sentence's k identical starting rows is live, or the beam would fill with copies.
        scores = torch.full((B, K), float("-inf"), device=src.device)
        scores[:, 0] = 0.0
        prefixes: list[list[list[int]]] = [[[] for _ in range(K)] for _ in range(B)]
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        done = [False] * B
        eos = self.tgt_vocab.eos
        for t in range(int(limits.max())):
            state, feed = self.step(tokens, state, feed, memory)
            log_probs = self.next_log_probs(feed, limits <= t + 1)
            V = log_probs.size(-1)
            candidates = (scores[:, :, None] + log_probs.view(B, K, V)).view(B, K * V)
            top_scores, top_index = candidates.topk(min(2 * K, K * V), dim=-1)
            rows = torch.arange(B * K, device=src.device)  # done sentences keep their rows unchanged
            new_scores, new_tokens, new_prefixes = scores.clone(), tokens.clone(), list(prefixes)
            for b in range(B):
                if done[b]:
                    continue
                live = []
                for rank, (score, index) in enumerate(zip(top_scores[b].tolist(), top_index[b].tolist())):
                    beam, token = divmod(index, V)
                    if score == float("-inf"):
                        break
                    if token != eos:
                        live.append((score, beam, token))
                        if len(live) == K:
                            break
                    elif rank < K:  # eos ranked below the best k would not have survived the beam
                        finished[b].append((self.normalized(score, t + 1), prefixes[b][beam]))
                if not live or self._settled(finished[b], live[0][0], t + 1, K):
                    done[b] = True
                    continue
                new_prefixes[b] = [prefixes[b][beam] + [token] for _, beam, token in live]
                live += [(float("-inf"), 0, eos)] * (K - len(live))  # dead filler rows
                for k, (score, beam, token) in enumerate(live):
                    rows[b * K + k] = b * K + beam
                    new_scores[b, k] = score
                    new_tokens[b * K + k] = token
            if all(done):
                break
            prefixes, scores, tokens = new_prefixes, new_scores, new_tokens
            state = self._select_state(state, rows)
            feed = feed.index_select(0, rows)
        return [max(hyps, key=lambda h: h[0])[1] for hyps in finished]

    @torch.no_grad()
    def sequence_scores(self, src: torch.Tensor, src_lengths: torch.Tensor, hypotheses: list[list[int]]) -> list[float]:
        """The model's `normalized` score of each hypothesis (target ids without bos and eos; the eos
        after them is scored too): what beam search maximises."""
        pad, bos, eos = self.tgt_vocab.pad, self.tgt_vocab.bos, self.tgt_vocab.eos
        rows = [torch.tensor([bos, *h, eos]) for h in hypotheses]
        tgt = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad).to(src.device)
        with self._evaluating():
            log_probs = torch.log_softmax(self(src, src_lengths, tgt[:, :-1]).float(), dim=-1)
        targets = tgt[:, 1:]
        picked = log_probs.gather(-1, targets[:, :, None]).squeeze(-1).masked_fill(targets == pad, 0.0)
        return [self.normalized(float(s), len(h) + 1) for s, h in zip(picked.sum(dim=1), hypotheses)]

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
