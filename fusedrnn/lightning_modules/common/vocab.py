"""`Vocab`: tokens <-> ids, the one vocabulary class of the models (characters, words, tags, features,
translation tokens); a model's own vocabulary only names its special tokens."""

from collections import Counter
from collections.abc import Iterable

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


class Vocab:
    """Tokens <-> ids: id k is `tokens[k]`.

    A subclass names its special tokens in `specials`; they take the first ids, in that order. `pad`,
    `unk`, `bos` and `eos` are the ids of those among them (None for one the vocabulary lacks). With unk,
    an unknown token encodes as unk; without, it is a ValueError. A checkpoint keeps `to_text()` (tokens
    in id order, `sep` between them: no token may hold it) and `from_text` reads it back.
    """

    specials: tuple[str, ...] = ()
    kind = "tokens"  # what the tokens are, in error messages

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        n = len(self.specials)
        if tuple(tokens[:n]) != self.specials:
            raise ValueError(f"a vocabulary must start with the special tokens {self.specials}, got {tokens[:n]}")
        if not tokens:
            raise ValueError(f"a vocabulary needs {self.kind}, got none")
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"vocabulary {self.kind} must be unique")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}
        specials = {s: i for i, s in enumerate(self.specials)}
        self.pad, self.unk, self.bos, self.eos = (specials.get(s) for s in (PAD, UNK, BOS, EOS))

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """The specials, then the tokens of `sequences` seen at least `min_freq` times, most frequent first
        (ties alphabetical, so the same data gives the same ids), at most `max_size` of them."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        counts = Counter(token for sequence in sequences for token in sequence)
        for special in cls.specials:
            counts.pop(special, None)
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls([*cls.specials, *kept[:max_size]])

    def to_text(self, sep: str = "\n") -> str:
        return sep.join(self.tokens)

    @classmethod
    def from_text(cls, text: str, sep: str = "\n") -> "Vocab":
        return cls(text.split(sep))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and other.specials == self.specials and other.tokens == self.tokens

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} {self.kind})"

    def encode(self, tokens: Iterable[str], what: str = "text") -> list[int]:
        """The ids of `tokens`. Without unk, a ValueError says that `what` holds tokens outside the
        vocabulary, and names them."""
        if self.unk is not None:
            return [self._ids.get(t, self.unk) for t in tokens]
        tokens = list(tokens)
        unknown = sorted(set(tokens) - self._ids.keys())
        if unknown:
            listed = ", ".join(repr(t) for t in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
            raise ValueError(f"{what} has {self.kind} outside the vocabulary of {len(self)}: {listed}")
        return [self._ids[t] for t in tokens]

    def id(self, token: str) -> int:
        return self.encode((token,))[0]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of `ids`, up to the first eos; pad and bos are dropped."""
        tokens = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                tokens.append(self.tokens[i])
        return tokens
