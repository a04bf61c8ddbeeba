"""Character-level text data: the vocabulary, the text file reader, and the LightningDataModule.

The training stream is cut into `batch_size` contiguous rows read left to right, so row r of batch i+1
continues row r of batch i. That is what lets the model carry its hidden state from one batch to the
next (truncated backpropagation through time). Under DDP each process gets its own block of rows.
"""

import math
import os
import tempfile
import urllib.request
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from fusedrnn.lightning_modules.common.vocab import Vocab

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


class CharVocab(Vocab):
    """A character vocabulary: id k is the k-th character of `chars`. No special tokens, so a character
    outside it is an error. Checkpoints keep `chars`, which `CharVocab(chars)` reads back (`from_text`
    builds the vocabulary of a text)."""

    kind = "characters"

    def __init__(self, chars: str):
        super().__init__(chars)
        self.chars = chars

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        """The distinct characters of `text`, sorted."""
        return cls("".join(sorted(set(text))))

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        """The ids of `text` as an int64 tensor; a ValueError names any character outside the vocabulary."""
        return torch.tensor(super().encode(text, what), dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(super().decode(torch.as_tensor(ids).tolist()))


def read_text(path: str | os.PathLike) -> str:
    """The contents of a UTF-8 text file, with a clear error for a missing, empty, binary or non-UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"text file {str(path)!r} {what}")
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"text file {str(path)!r} is empty")
    if b"\0" in raw:
        raise ValueError(f"{str(path)!r} contains NUL bytes: it looks like a binary file, not UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 1].hex()
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text: byte 0x{bad} at offset {err.start} cannot be decoded"
        ) from err


def download(url: str, path: str | os.PathLike) -> None:
    """Fetch `url` to `path` with a progress bar; written to a temporary file first so that processes
    racing on the same path (several DDP ranks) each see either no file or a whole one."""
    from tqdm import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False)
    try:
        with tmp, urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {path.name}") as bar:
                while chunk := response.read(1 << 16):
                    tmp.write(chunk)
                    bar.update(len(chunk))
    except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
        os.unlink(tmp.name)
        raise FileNotFoundError(
            f"text file {str(path)!r} does not exist and downloading {url} failed ({err}). "
            "Without a network, pass --data.path PATH to a UTF-8 text file you have."
        ) from err
    os.replace(tmp.name, path)


class ContiguousBatches(IterableDataset):
    """Batches (inputs, targets), each (batch_size, <= seq_len), read left to right from contiguous rows.

    `ids` is cut into world_size * batch_size equal rows; this process takes rows
    [rank * batch_size, (rank + 1) * batch_size). Targets are the inputs shifted by one character.
    Iterable, so that Lightning does not put a shuffling or distributed sampler in front of it.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        rows = batch_size * world_size
        row_len = (len(ids) - 1) // rows
        if row_len < 1:
            raise ValueError(
                f"{len(ids)} characters are too few for {rows} rows (batch_size {batch_size} x {world_size} "
                "processes): use a longer text or a smaller batch_size"
            )
        own = slice(rank * batch_size, (rank + 1) * batch_size)
        self.inputs = ids[: rows * row_len].view(rows, row_len)[own]
        self.targets = ids[1 : rows * row_len + 1].view(rows, row_len)[own]
        self.seq_len = seq_len

    def __len__(self) -> int:
        return math.ceil(self.inputs.size(1) / self.seq_len)

    def __iter__(self):
        for start in range(0, self.inputs.size(1), self.seq_len):
            end = start + self.seq_len
            yield self.inputs[:, start:end].contiguous(), self.targets[:, start:end].contiguous()


class TextDataModule(pl.LightningDataModule):
    """Any UTF-8 text file as a character stream: the first (1 - val_fraction) of the characters for
    training, the rest for validation (tiny-shakespeare's convention; `test` uses the validation part too).

    Args:
        path: the text file.
        download: when `path` does not exist, fetch tiny-shakespeare to it.
        batch_size: contiguous rows per batch and process.
        seq_len: characters per row and batch (the truncation length of backpropagation through time).
        val_fraction: share of the text, at its end, used for validation.
    """

    def __init__(
        self,
        path: str = "data/tinyshakespeare/input.txt",
        download: bool = False,
        batch_size: int = 64,
        seq_len: int = 128,
        val_fraction: float = 0.1,
    ):
        super().__init__()
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        self.save_hyperparameters()
        self.path = Path(path)
        self.download = download
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.val_fraction = val_fraction
        self._text: str | None = None
        self._vocab: CharVocab | None = None
        self._splits: dict[str, ContiguousBatches] = {}

    def prepare_data(self) -> None:
        self._fetch()

    def _fetch(self) -> None:
        if self.path.exists():
            return
        if not self.download:
            raise FileNotFoundError(
                f"text file {str(self.path)!r} does not exist: pass --data.path PATH to a UTF-8 text file, "
                "or --data.download true to fetch tiny-shakespeare to that path"
            )
        download(TINY_SHAKESPEARE_URL, self.path)

    @property
    def text(self) -> str:
        # Read on first use: the model needs the vocabulary when the CLI builds it, before any setup().
        if self._text is None:
            self._fetch()
            self._text = read_text(self.path)
        return self._text

    @property
    def vocab(self) -> CharVocab:
        if self._vocab is None:
            self._vocab = CharVocab.from_text(self.text)
        return self._vocab

    def setup(self, stage: str) -> None:
        ids = self.vocab.encode(self.text, what=str(self.path))
        n_train = int(len(ids) * (1 - self.val_fraction))
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        parts = {"train": ids[:n_train], "val": ids[n_train:]}
        for name, part in parts.items():
            try:
                self._splits[name] = ContiguousBatches(part, self.batch_size, self.seq_len, rank, world_size)
            except ValueError as err:
                raise ValueError(f"{str(self.path)!r}, {name} part: {err}") from None

    def _loader(self, split: str) -> DataLoader:
        # batch_size=None: the dataset yields whole batches. No worker processes: each would replay the
        # whole stream, and the data is already a tensor in memory.
        return DataLoader(self._splits[split], batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("val")

    def state_dict(self) -> dict:
        return {"vocab": self.vocab.chars}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = CharVocab(state_dict["vocab"])
        if saved != self.vocab:
            raise ValueError(
                f"the checkpoint's vocabulary ({len(saved)} characters) differs from that of {str(self.path)!r} "
                f"({len(self.vocab)}): resume with the text the model was trained on"
            )
