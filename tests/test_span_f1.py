"""Span F1 equals seqeval's strict result; tag schemes and their transitions."""

import random

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES

from fusedrnn.lightning_modules.span_f1 import SpanF1
from fusedrnn.lightning_modules.tag_schemes import allowed_transition, iob1_to_iob2, spans

SEQEVAL_SCHEME = {"IOB2": IOB2, "BIOES": IOBES}


def random_sequences(rng, scheme, n):
    prefixes = "BIO" if scheme == "IOB2" else "BIESO"
    return [
        ["O" if (p := rng.choice(prefixes)) == "O" else f"{p}-{rng.choice(['PER', 'LOC', 'ORG'])}" for _ in range(rng.randint(1, 9))]
        for _ in range(n)
    ]


def noisy_copy(rng, gold, scheme):
    flip = random_sequences(rng, scheme, len(gold))
    return [[f[i % len(f)] if rng.random() < 0.3 else tag for i, tag in enumerate(g)] for g, f in zip(gold, flip)]


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_seqeval_strict_on_random_sequences(scheme, seed):
    rng = random.Random(seed)
    gold = random_sequences(rng, scheme, 60)
    predicted = noisy_copy(rng, gold, scheme)
    metric = SpanF1(["PER", "LOC", "ORG"], scheme)
    metric.update(predicted[:30], gold[:30])
    metric.update(predicted[30:], gold[30:])
    got = metric.compute()
    kw = dict(mode="strict", scheme=SEQEVAL_SCHEME[scheme], zero_division=0)
    assert got["f1"].item() == pytest.approx(f1_score(gold, predicted, **kw))
    assert got["precision"].item() == pytest.approx(precision_score(gold, predicted, **kw))
    assert got["recall"].item() == pytest.approx(recall_score(gold, predicted, **kw))
    report = classification_report(gold, predicted, output_dict=True, **kw)
    for kind in ("PER", "LOC", "ORG"):
        if kind in report:
            assert got[f"f1_{kind}"].item() == pytest.approx(report[kind]["f1-score"])


def test_hand_made_sequences():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "I-ORG", "I-ORG", "I-ORG"]]  # an I without B: no span
    assert spans(predicted[1], "IOB2") == set()
    metric = SpanF1(["PER", "LOC", "ORG"])
    metric.update(predicted, gold)
    got = metric.compute()
    # One of two predicted spans is right; one of three gold spans is found.
    assert got["precision"].item() == pytest.approx(1 / 2)
    assert got["recall"].item() == pytest.approx(1 / 3)
    assert got["f1"].item() == pytest.approx(0.4)
    assert got["f1_PER"].item() == 1.0 and got["f1_LOC"].item() == 0.0


def test_iob1_conversion_and_scheme_errors():
    assert iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    with pytest.raises(ValueError, match="unknown tag scheme"):
        spans(["O"], "BILOU")
    with pytest.raises(ValueError, match="malformed tag"):
        spans(["PER"], "IOB2")
    with pytest.raises(ValueError, match="not part of scheme IOB2"):
        spans(["S-PER"], "IOB2")


def test_transitions():
    assert not allowed_transition("IOB2", None, "I-PER")
    assert not allowed_transition("IOB2", "B-LOC", "I-PER")
    assert allowed_transition("IOB2", "B-PER", "I-PER") and allowed_transition("IOB2", "I-PER", "I-PER")
    assert allowed_transition("BIOES", "B-PER", "E-PER") and not allowed_transition("BIOES", "B-PER", "O")
    assert not allowed_transition("BIOES", "I-PER", None) and allowed_transition("BIOES", "S-PER", None)
