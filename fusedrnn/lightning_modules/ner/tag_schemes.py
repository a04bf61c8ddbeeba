"""Tagging schemes: entity spans under strict matching, and which tag transitions a scheme allows
(for constrained CRF decoding).

Data may come in IOB1, IOB2 or BIOES. IOB1 (B-X only where a chunk directly follows one of the same
type, as in the original CoNLL-2003 files) is rewritten to IOB2 on reading, so models, decoding and
metrics work in IOB2 or BIOES. Strict matching is seqeval's strict mode: a span is a well-formed chunk
(IOB2: B-X I-X*; BIOES: S-X or B-X I-X* E-X); tokens that form no well-formed chunk belong to no span.
"""

SCHEMES = ("IOB1", "IOB2", "BIOES")  # what data may use
MODEL_SCHEMES = ("IOB2", "BIOES")  # what models decode and metrics read (IOB1 becomes IOB2)


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return scheme


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not kind:
        raise ValueError(f"malformed tag {tag!r}: expected O or PREFIX-TYPE with PREFIX in B, I, E, S")
    return prefix, kind


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """I-X that opens a chunk (at the start, after O or after another type) becomes B-X."""
    out = []
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "I" and (i == 0 or split_tag(tags[i - 1])[1] != kind):
            tag = "B-" + kind
        out.append(tag)
    return out


def read_as(scheme: str) -> str:
    """The scheme data in `scheme` is held in once read (IOB1 becomes IOB2)."""
    return "IOB2" if check_scheme(scheme) == "IOB1" else scheme


def spans(tags: list[str], scheme: str) -> set[tuple[str, int, int]]:
    """Strict entity spans (type, start, end exclusive) of one tag sequence in IOB2 or BIOES."""
    if check_scheme(scheme) not in MODEL_SCHEMES:
        raise ValueError(f"spans are read in {' or '.join(MODEL_SCHEMES)}; convert {scheme} first (iob1_to_iob2)")
    parts = [split_tag(t) for t in tags]
    for prefix, _ in parts:
        if prefix not in _PREFIXES[scheme]:
            raise ValueError(f"tag prefix {prefix!r} is not part of scheme {scheme}")
    return _EXTRACT[scheme](parts)


def convert(tags: list[str], scheme: str, to: str) -> list[str]:
    """The tags, in IOB2 or BIOES, rewritten in scheme `to` (IOB2 or BIOES) with the same strict spans;
    tokens in no well-formed chunk become O."""
    if check_scheme(to) not in MODEL_SCHEMES:
        raise ValueError(f"tags can be rewritten in {' or '.join(MODEL_SCHEMES)}, not {to}")
    out = ["O"] * len(tags)
    for kind, start, end in spans(tags, scheme):
        if to == "BIOES" and end - start == 1:
            out[start] = "S-" + kind
            continue
        out[start:end] = ["B-" + kind] + ["I-" + kind] * (end - start - 1)
        if to == "BIOES":
            out[end - 1] = "E-" + kind
    return out


def _iob2(parts):
    found, start = set(), None
    for i, (prefix, kind) in enumerate(parts + [("O", "")]):
        if start is not None and not (prefix == "I" and kind == parts[start][1]):
            found.add((parts[start][1], start, i))
            start = None
        if prefix == "B":
            start = i
    return found


def _bioes(parts):
    found, start = set(), None
    for i, (prefix, kind) in enumerate(parts):
        if prefix == "S":
            found.add((kind, i, i + 1))
            start = None
        elif prefix == "B":
            start = i
        elif prefix == "I":
            if start is None or parts[start][1] != kind:
                start = None
        elif prefix == "E":
            if start is not None and parts[start][1] == kind:
                found.add((kind, start, i + 1))
            start = None
        else:
            start = None
    return found


_PREFIXES = {"IOB2": ("B", "I", "O"), "BIOES": ("B", "I", "E", "S", "O")}
_EXTRACT = {"IOB2": _iob2, "BIOES": _bioes}


def allowed_transition(scheme: str, before: str | None, after: str | None) -> bool:
    """Whether tag `after` may follow tag `before` (None: the sequence start or end)."""
    if check_scheme(scheme) not in MODEL_SCHEMES:
        raise ValueError(f"transitions are defined for {' or '.join(MODEL_SCHEMES)}, not {scheme}")
    if before is None and after is None:
        return True
    if after is None:  # the sequence ends after `before`
        prefix, _ = split_tag(before)
        return prefix in ("O", "I", "B") if scheme != "BIOES" else prefix in ("O", "E", "S")
    to_prefix, to_kind = split_tag(after)
    from_prefix, from_kind = split_tag(before) if before is not None else ("O", "")
    inside = from_prefix in ("B", "I") and from_kind == to_kind
    if scheme == "IOB2":
        return to_prefix != "I" or inside
    # BIOES: I and E continue an open chunk of their type; everything else needs none open.
    if to_prefix in ("I", "E"):
        return inside
    return from_prefix not in ("B", "I")
