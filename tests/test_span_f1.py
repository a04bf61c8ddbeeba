"""Span F1 equals seqeval's strict result; tag schemes and their transitions."""

import random

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES, Entities

from fusedrnn.lightning_modules.ner.span_f1 import SpanF1
from fusedrnn.lightning_modules.ner.tag_schemes import allowed_transition, convert, iob1_to_iob2, spans

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


def strict_entities(sequences, scheme):
    """seqeval's strict chunks, as (type, start, end) sets: the independent reference."""
    return [{(e.tag, e.start, e.end) for e in row} for row in Entities(sequences, SEQEVAL_SCHEME[scheme]).entities]


@pytest.mark.parametrize("scheme, to", [("IOB2", "BIOES"), ("BIOES", "IOB2"), ("IOB2", "IOB2"), ("BIOES", "BIOES")])
def test_convert_keeps_every_strict_span(scheme, to):
    rng = random.Random(7)
    sequences = random_sequences(rng, scheme, 200)  # many ill-formed: those tokens become O
    converted = [convert(tags, scheme, to) for tags in sequences]
    assert strict_entities(converted, to) == strict_entities(sequences, scheme)
    assert all(len(c) == len(t) for c, t in zip(converted, sequences))
    # Written back: the original with its ill-formed tokens made O.
    assert [convert(c, to, scheme) for c in converted] == [convert(t, scheme, scheme) for t in sequences]
    assert convert(["B-PER", "I-PER", "O", "B-LOC"], "IOB2", "BIOES") == ["B-PER", "E-PER", "O", "S-LOC"]
    assert convert(["B-PER", "I-PER", "I-PER", "O", "I-LOC"], "IOB2", "BIOES") == ["B-PER", "I-PER", "E-PER", "O", "O"]
    with pytest.raises(ValueError, match="IOB2 or BIOES, not IOB1"):
        convert(["O"], "IOB2", "IOB1")


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
