"""The CRF's log-likelihood and Viterbi decoding against brute-force enumeration of all tag paths."""

import itertools

import pytest
import torch

from fusedrnn.lightning_modules.ner.crf import LinearChainCRF
from fusedrnn.lightning_modules.ner.tag_schemes import allowed_transition

TAGS = ["O", "B-X", "I-X", "B-Y", "I-Y"]


def path_score(crf, emissions, path):
    transitions, start, end = crf._scores()
    score = start[path[0]] + emissions[0, path[0]] + end[path[-1]]
    for t in range(1, len(path)):
        score = score + transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return score


def random_crf(constrained, seed):
    torch.manual_seed(seed)
    crf = LinearChainCRF.for_tags(TAGS, "IOB2" if constrained else None)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


@pytest.mark.parametrize("constrained", [False, True])
def test_log_likelihood_and_viterbi_match_brute_force(constrained):
    crf = random_crf(constrained, 0)
    K, L = len(TAGS), 4
    emissions = torch.randn(3, L, K, dtype=torch.float64)
    lengths = [4, 1, 3]
    mask = torch.tensor([[t < n for t in range(L)] for n in lengths])
    tags = torch.randint(0, K, (3, L))
    crf = crf.double()
    got_ll = crf.log_likelihood(emissions, tags, mask)
    got_paths = crf.decode(emissions, mask)
    for b, n in enumerate(lengths):
        scores = {p: path_score(crf, emissions[b, :n], p) for p in itertools.product(range(K), repeat=n)}
        log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
        gold = tuple(tags[b, :n].tolist())
        assert torch.allclose(got_ll[b].double(), scores[gold] - log_z, atol=1e-4)
        best = max(scores, key=lambda p: scores[p])
        assert tuple(got_paths[b]) == best


def test_constrained_decoding_only_emits_allowed_transitions():
    crf = random_crf(True, 1)
    emissions = torch.randn(8, 12, len(TAGS)) * 5
    mask = torch.ones(8, 12, dtype=torch.bool)
    for path in crf.decode(emissions, mask):
        names = [TAGS[i] for i in path]
        assert allowed_transition("IOB2", None, names[0])
        assert all(allowed_transition("IOB2", a, b) for a, b in zip(names, names[1:]))


def test_gradient_flows_to_emissions_and_transitions():
    crf = random_crf(True, 2)
    emissions = torch.randn(2, 5, len(TAGS), requires_grad=True)
    tags = torch.tensor([[1, 2, 0, 3, 4], [0, 0, 1, 2, 2]])
    loss = crf(emissions, tags, torch.ones(2, 5, dtype=torch.bool))
    loss.backward()
    assert loss.item() > 0 and emissions.grad.abs().sum() > 0 and crf.transitions.grad.abs().sum() > 0
