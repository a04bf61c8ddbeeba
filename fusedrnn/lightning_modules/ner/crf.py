"""A linear-chain conditional random field: log-likelihood by the vectorised forward algorithm and
Viterbi decoding, both optionally constrained to the transitions a tagging scheme allows."""

import torch
from torch import nn

from fusedrnn.lightning_modules.ner.tag_schemes import allowed_transition

# Added to the score of a forbidden transition. Finite, so a forbidden gold path gives a large loss
# rather than NaN; far below any learned score, so decoding never takes one.
FORBIDDEN = -1e4


class LinearChainCRF(nn.Module):
    """Scores of tag sequences y for emissions e: start[y_0] + sum_t e[t, y_t] + sum_t trans[y_t-1, y_t] + end[y_-1].

    emissions: (B, L, K) floats; tags: (B, L) ints; mask: (B, L) bools, True on each sequence's first
    lengths[b] positions (every sequence at least one token).
    """

    def __init__(self, num_tags: int, allowed: torch.Tensor | None = None, allowed_start=None, allowed_end=None):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

        def penalty(ok, shape):
            ok = torch.ones(shape, dtype=torch.bool) if ok is None else torch.as_tensor(ok, dtype=torch.bool)
            return torch.where(ok, 0.0, FORBIDDEN)

        self.register_buffer("transition_penalty", penalty(allowed, (num_tags, num_tags)), persistent=False)
        self.register_buffer("start_penalty", penalty(allowed_start, (num_tags,)), persistent=False)
        self.register_buffer("end_penalty", penalty(allowed_end, (num_tags,)), persistent=False)

    @classmethod
    def for_tags(cls, tags: list[str], scheme: str | None) -> "LinearChainCRF":
        """A CRF over `tags` (index order), constrained to `scheme` ("IOB2", "BIOES"), or free if None."""
        if scheme is None:
            return cls(len(tags))
        allowed = [[allowed_transition(scheme, a, b) for b in tags] for a in tags]
        start = [allowed_transition(scheme, None, b) for b in tags]
        end = [allowed_transition(scheme, a, None) for a in tags]
        return cls(len(tags), allowed, start, end)

    def _scores(self):
        return (
            self.transitions + self.transition_penalty,
            self.start + self.start_penalty,
            self.end + self.end_penalty,
        )

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tags | emissions) per sequence, shape (B,)."""
        emissions = emissions.float()
        transitions, start, end = self._scores()
        mask = mask.bool()
        B, L, _ = emissions.shape
        rows = torch.arange(B, device=emissions.device)
        # Score of the given path.
        gold = start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        for t in range(1, L):
            step = transitions[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]
            gold = gold + step * mask[:, t]
        last = tags[rows, mask.sum(1) - 1]
        gold = gold + end[last]
        # log of the sum over all paths: forward algorithm, one logsumexp per step for the whole batch.
        alpha = start + emissions[:, 0]
        for t in range(1, L):
            nxt = torch.logsumexp(alpha[:, :, None] + transitions[None] + emissions[:, t, None, :], dim=1)
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return gold - torch.logsumexp(alpha + end, dim=1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the batch."""
        return -self.log_likelihood(emissions, tags, mask).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag sequence of each row (Viterbi), as lists of its mask's length."""
        emissions = emissions.float()
        transitions, start, end = self._scores()
        mask = mask.bool()
        L = emissions.size(1)
        score = start + emissions[:, 0]
        backpointers = []
        for t in range(1, L):
            best, index = (score[:, :, None] + transitions[None]).max(dim=1)
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
            backpointers.append(index)
        last = (score + end).argmax(dim=1).tolist()
        lengths = mask.sum(1).tolist()
        pointers = torch.stack(backpointers, dim=1).tolist() if backpointers else []
        paths = []
        for b, (length, tag) in enumerate(zip(lengths, last)):
            path = [tag]
            for t in range(length - 1, 0, -1):
                path.append(pointers[b][t - 1][path[-1]])
            paths.append(path[::-1])
        return paths
