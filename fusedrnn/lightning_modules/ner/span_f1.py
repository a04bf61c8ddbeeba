"""Entity-level (span) precision, recall and F1 under strict matching, as a torchmetrics Metric.

Counts are kept per entity type and summed across processes, so the score is the corpus score of the
whole data set however it was split among ranks.
"""

import torch
from torchmetrics import Metric

from fusedrnn.lightning_modules.ner.tag_schemes import MODEL_SCHEMES, spans


class SpanF1(Metric):
    """update(predicted, gold) with lists of tag-string sequences; compute() gives a dict with micro
    precision, recall and f1, and f1 per type (keys "f1_PER", ...).

    A span of a type outside `entity_types` is a ValueError, unless `count_unseen`: then such spans are
    counted together (for a tagger, gold entities of a type it never saw in training, which it can only
    miss), in the micro scores and as "f1_unseen" once there are any."""

    full_state_update = False

    def __init__(self, entity_types: list[str], scheme: str = "IOB2", count_unseen: bool = False, **kwargs):
        super().__init__(**kwargs)
        if scheme not in MODEL_SCHEMES:
            raise ValueError(f"SpanF1 reads {' or '.join(MODEL_SCHEMES)} tags, not {scheme!r}")
        self.scheme = scheme
        self.entity_types = sorted(entity_types)
        self._index = {kind: i for i, kind in enumerate(self.entity_types)}
        self.count_unseen = count_unseen
        n = len(self.entity_types) + count_unseen  # the last slot: the unseen types
        for name in ("true_positives", "false_positives", "false_negatives"):
            self.add_state(name, default=torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def _count(self, found: set) -> torch.Tensor:
        counts = torch.zeros(len(self.entity_types) + self.count_unseen, dtype=torch.long)
        for kind, _, _ in found:
            if kind not in self._index and not self.count_unseen:
                raise ValueError(f"entity type {kind!r} is not one of {self.entity_types}")
            counts[self._index.get(kind, len(self.entity_types))] += 1
        return counts

    def update(self, predicted: list[list[str]], gold: list[list[str]]) -> None:
        if len(predicted) != len(gold):
            raise ValueError(f"{len(predicted)} predicted sequences for {len(gold)} gold ones")
        for p, g in zip(predicted, gold):
            if len(p) != len(g):
                raise ValueError(f"a predicted sequence has {len(p)} tags, its gold one {len(g)}")
            p_spans, g_spans = spans(p, self.scheme), spans(g, self.scheme)
            device = self.true_positives.device
            self.true_positives += self._count(p_spans & g_spans).to(device)
            self.false_positives += self._count(p_spans - g_spans).to(device)
            self.false_negatives += self._count(g_spans - p_spans).to(device)

    def compute(self) -> dict[str, torch.Tensor]:
        tp, fp, fn = (x.double() for x in (self.true_positives, self.false_positives, self.false_negatives))
        result = _prf(tp.sum(), fp.sum(), fn.sum())
        per_type = _prf(tp, fp, fn)["f1"]
        for kind, f1 in zip(self.entity_types, per_type):
            result[f"f1_{kind}"] = f1
        if self.count_unseen and (tp[-1] + fp[-1] + fn[-1]) > 0:
            result["f1_unseen"] = per_type[-1]
        return result


def _prf(tp, fp, fn) -> dict[str, torch.Tensor]:
    """Precision, recall and F1, taking 0 where a denominator is 0 (seqeval's convention)."""
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}
