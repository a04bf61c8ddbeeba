"""`Search`: greedy and beam search over a `Seq2SeqNet`, and the scores they rank translations by.

Every translation ends in eos: a sentence at its length limit gets eos as its last token. So a
hypothesis's score is always the model's log-probability of the tokens and the eos after them. The
network's mode is the caller's: eval, for no dropout.
"""

from dataclasses import dataclass

import torch
from torch import nn

from fusedrnn.lightning_modules.common.vocab import Vocab
from fusedrnn.lightning_modules.seq2seq.net import Seq2SeqNet


@dataclass
class Search:
    """Decoding with `net` into the target vocabulary `vocab`.

    length_penalty: hypotheses are ranked by log-probability / length ** length_penalty.
    max_len_ratio, max_len_offset: a translation ends after ratio * source tokens + offset tokens.
    """

    net: Seq2SeqNet
    vocab: Vocab
    length_penalty: float = 1.0
    max_len_ratio: float = 1.5
    max_len_offset: int = 5

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """The most tokens (eos included) a translation of each source may have."""
        return torch.ceil(src_lengths.float() * self.max_len_ratio).long() + self.max_len_offset

    def next_log_probs(self, attentional: torch.Tensor, at_limit: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) of the next token, -inf for tokens decoding never produces: pad and
        bos anywhere, and all but eos in rows at their length limit (at_limit (N,) bool)."""
        log_probs = torch.log_softmax(self.net.output(attentional).float(), dim=-1)
        vocab = self.vocab
        banned = torch.zeros_like(log_probs, dtype=torch.bool)
        banned[:, [vocab.pad, vocab.bos]] = True
        banned |= at_limit[:, None] & (torch.arange(len(vocab), device=banned.device) != vocab.eos)
        return log_probs.masked_fill(banned, float("-inf"))

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_lengths: torch.Tensor) -> list[list[int]]:
        """The likeliest next token at every step, until eos. Returns target ids per sentence, eos excluded."""
        memory, state = self.net.encode(src, src_lengths)
        B = src.size(0)
        limits = self.max_lengths(src_lengths).to(src.device)
        tokens = torch.full((B,), self.vocab.bos, dtype=torch.long, device=src.device)
        feed = self.net.initial_feed(B)
        outputs: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        for t in range(int(limits.max())):
            state, feed = self.net.step(tokens, state, feed, memory)
            tokens = self.next_log_probs(feed, limits <= t + 1).argmax(dim=-1)
            for b, token in enumerate(tokens.tolist()):
                if not done[b]:
                    done[b] = token == self.vocab.eos
                    outputs[b] += [] if done[b] else [token]
            if all(done):
                break
        return outputs

    def normalized(self, log_prob: float, length: int) -> float:
        """The score by which beam search ranks a hypothesis of `length` tokens (eos included)."""
        return log_prob / max(length, 1) ** self.length_penalty

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
        memory, state = self.net.encode(src, src_lengths)
        memory = memory.repeat(K)
        state = self.net.select_state(state, torch.arange(B, device=src.device).repeat_interleave(K))
        feed = self.net.initial_feed(B * K)
        tokens = torch.full((B * K,), self.vocab.bos, dtype=torch.long, device=src.device)
        limits = self.max_lengths(src_lengths).to(src.device).repeat_interleave(K)
        # Only the first of a sentence's k identical starting rows is live, or the beam would fill with copies.
        scores = torch.full((B, K), float("-inf"), device=src.device)
        scores[:, 0] = 0.0
        prefixes: list[list[list[int]]] = [[[] for _ in range(K)] for _ in range(B)]
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        done = [False] * B
        eos = self.vocab.eos
        for t in range(int(limits.max())):
            state, feed = self.net.step(tokens, state, feed, memory)
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
            state = self.net.select_state(state, rows)
            feed = feed.index_select(0, rows)
        return [max(hyps, key=lambda h: h[0])[1] for hyps in finished]

    @torch.no_grad()
    def sequence_scores(self, src: torch.Tensor, src_lengths: torch.Tensor, hypotheses: list[list[int]]) -> list[float]:
        """The model's `normalized` score of each hypothesis (target ids without bos and eos; the eos
        after them is scored too): what beam search maximises."""
        pad, bos, eos = self.vocab.pad, self.vocab.bos, self.vocab.eos
        rows = [torch.tensor([bos, *h, eos]) for h in hypotheses]
        tgt = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad).to(src.device)
        log_probs = torch.log_softmax(self.net(src, src_lengths, tgt[:, :-1]).float(), dim=-1)
        targets = tgt[:, 1:]
        picked = log_probs.gather(-1, targets[:, :, None]).squeeze(-1).masked_fill(targets == pad, 0.0)
        return [self.normalized(float(s), len(h) + 1) for s, h in zip(picked.sum(dim=1), hypotheses)]
