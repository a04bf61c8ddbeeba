"""NER: the CoNLL reader and its errors, the tagger trained through the CLI with both backends, and a
checkpoint round trip. Data is generated here; the real CoNLL-2003 run happens only when present."""

import io
import random
from pathlib import Path

import pytest
import torch

from fusedrnn.lightning_modules.ner import NERTagger, other_occurrences_mean, tagging
from fusedrnn.lightning_modules.ner.cli import main
from fusedrnn.lightning_modules.ner.data import CASINGS, ConllDataModule, DocumentBatches, casing, collate, read_conll
from fusedrnn.lightning_modules.ner.net import NERNet
from fusedrnn.lightning_modules.ner.tag_schemes import spans

PEOPLE = ["Alice", "Bob", "Carol", "Dmitri", "Eve"]
PLACES = ["Paris", "Lagos", "Lima", "Oslo"]
FILLER = ["the", "met", "in", "and", "went", "to", "yesterday", "."]
CONLL2003 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2003"


def sentence(rng):
    tokens = []
    for _ in range(rng.randint(2, 7)):
        r = rng.random()
        if r < 0.2:
            tokens += [(rng.choice(PEOPLE), "B-PER")] + ([("Smith", "I-PER")] if rng.random() < 0.5 else [])
        elif r < 0.35:
            tokens.append((rng.choice(PLACES), "B-LOC"))
        else:
            tokens.append((rng.choice(FILLER), "O"))
    return tokens


def write_conll(path, n, seed, docstart=True):
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for _ in range(n):
        lines += [f"{w} NNP B-NP {t}" for w, t in sentence(rng)] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("conll")
    return {split: str(write_conll(d / f"{split}.txt", n, seed)) for split, n, seed in
            [("train", 48, 0), ("dev", 16, 1), ("test", 16, 2)]}


def test_reader_skips_docstart_and_converts_iob1(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("-DOCSTART- -X- O\n\nJohn NNP I-PER\nSmith NNP I-PER\nMary NNP B-PER\nin IN O\nRome NNP I-LOC\n\n")
    (s,) = read_conll(f, scheme="IOB1")
    assert s.words == ["John", "Smith", "Mary", "in", "Rome"]
    assert s.tags == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]


@pytest.mark.parametrize("text, message", [
    ("a NN O\nb O\n", r"a\.txt:2: expected 3 columns"),
    ("a NN X-PER\n", r"a\.txt:1: malformed tag"),
    ("a NN S-PER\n", r"a\.txt:1: tag 'S-PER' is not in scheme IOB2"),
    ("\n\n", "holds no sentences"),
])
def test_reader_errors_name_file_and_line(tmp_path, text, message):
    f = tmp_path / "a.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_conll(f)


def test_reader_missing_file_and_unknown_scheme(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_conll(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        read_conll(tmp_path / "nope.txt", scheme="BILOU")


def test_vocabularies_and_batches(data):
    dm = ConllDataModule(data["train"], data["dev"], data["test"], min_word_freq=2, batch_size=4)
    v = dm.vocabularies
    assert v["words"].split("\n")[:2] == ["<pad>", "<unk>"] and v["tags"].split("\n")[0] == "O" and v["scheme"] == "IOB2"
    assert set(v["tags"].split("\n")) == {"O", "B-PER", "I-PER", "B-LOC"}
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["words"].shape == batch["mask"].shape == batch["tags"].shape
    assert batch["chars"].shape[:2] == batch["words"].shape
    assert bool((batch["words"][~batch["mask"]] == 0).all())


def fit_args(data, tmp_path, backend, extra=()):
    return ["fit", "--data.train_path", data["train"], "--data.val_path", data["dev"], "--data.test_path", data["test"],
            "--data.batch_size", "8", "--model.word_dim", "8", "--model.char_dim", "6", "--model.char_hidden", "5",
            "--model.hidden_size", "8", "--model.backend", backend, "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
            "--seed_everything", "0", *extra]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fast_dev_run_fit_with_both_backends(data, tmp_path, backend):
    assert main(fit_args(data, tmp_path, backend, ["--trainer.fast_dev_run", "1"])) == 0


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fast_dev_run_with_the_regularisers(data, tmp_path, backend, monkeypatch):
    built = []
    real_init = NERNet.__init__
    monkeypatch.setattr(NERNet, "__init__", lambda self, *a, **k: built.append(self) or real_init(self, *a, **k))
    extra = ["--trainer.fast_dev_run", "1", "--model.weight_drop", "0.3", "--model.recurrent_dropout", "0.2",
             "--model.zoneout", "0.1", "--model.layer_norm", "true"]
    assert main(fit_args(data, tmp_path, backend, extra)) == 0
    word_rnn = built[-1].word_rnn
    assert (word_rnn.weight_drop, word_rnn.recurrent_dropout, word_rnn.zoneout) == (0.3, 0.2, 0.1)
    assert word_rnn.layer_norm and "ln_c_weight_l0" in word_rnn.state_dict()


def test_fast_dev_run_with_every_input_feature(data, tmp_path):
    extra = ["--trainer.fast_dev_run", "1", "--data.feature_columns", "[1, 2]", "--model.feature_dim", "3",
             "--model.case_dim", "2", "--data.normalize_digits", "true"]
    assert main(fit_args(data, tmp_path, "torch", extra)) == 0


def test_documents_forms_and_document_batches(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("-DOCSTART- O\n\nCosta O\nwins O\n\nJorge O\nCOSTA O\n\n-DOCSTART- O\n\ncosta O\n\n")
    dm = ConllDataModule(str(f), str(f))
    sentences = dm.sentences("train")
    assert [s.document for s in sentences] == [1, 1, 2]
    forms = [item[5] for item in dm.encode(sentences)]
    assert forms == [[1, 2], [3, 1], [4]]  # "Costa" and "COSTA" share a form in document 1, not with document 2
    documents = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 3]
    for shuffle in (False, True):
        batches = list(DocumentBatches(documents, 4, shuffle))
        assert sorted(i for b in batches for i in b) == list(range(len(documents)))
        assert all(len(b) <= 4 for b in batches)
        # Whole documents, except document 3 (5 sentences), cut into 4 + 1.
        by_doc = {d: {k for k, b in enumerate(batches) if any(documents[i] == d for i in b)} for d in set(documents)}
        assert all(len(by_doc[d]) == 1 for d in (0, 1, 2)) and len(by_doc[3]) == 2
    assert list(DocumentBatches(documents, 4, False)) == [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]


def test_document_batches_refuse_several_processes(data):
    dm = ConllDataModule(data["train"], data["dev"], batch_by_document=True)
    dm.trainer = type("FakeTrainer", (), {"world_size": 2})()
    dm.setup("fit")
    with pytest.raises(ValueError, match="one process only"):
        dm.train_dataloader()


def test_other_occurrences_mean_against_a_loop():
    torch.manual_seed(0)
    states = torch.randn(3, 4, 5, dtype=torch.float64)
    forms = torch.tensor([[1, 2, 1, 0], [3, 1, 0, 0], [2, 4, 5, 2]])
    mask = forms != 0
    got = other_occurrences_mean(states, forms, mask)
    want = torch.zeros_like(states)
    for b, t in mask.nonzero().tolist():
        others = [states[c, u] for c, u in mask.nonzero().tolist() if forms[c, u] == forms[b, t] and (c, u) != (b, t)]
        if others:
            want[b, t] = torch.stack(others).mean(0)
    assert torch.allclose(got, want)
    assert got[0, 1].abs().sum() > 0 and got[1, 0].abs().sum() == 0  # form 2 recurs; form 3 does not


def test_fast_dev_run_with_document_context(data, tmp_path):
    extra = ["--trainer.fast_dev_run", "2", "--data.batch_by_document", "true", "--model.document_context", "true"]
    assert main(fit_args(data, tmp_path, "torch", extra)) == 0


def test_model_scheme_bioes_keeps_the_spans(data, tmp_path):
    iob2, bioes = ConllDataModule(data["train"], data["dev"]), ConllDataModule(data["train"], data["dev"], model_scheme="BIOES")
    assert bioes.vocabularies["scheme"] == "BIOES"
    assert {t[0] for t in bioes.vocabularies["tags"].split("\n")} == {"O", "B", "E", "S"}  # no 3-token chunks
    for a, b in zip(iob2.sentences("val"), bioes.sentences("val")):
        assert a.words == b.words and spans(a.tags, "IOB2") == spans(b.tags, "BIOES")
    with pytest.raises(ValueError, match="model_scheme must be one of IOB2, BIOES"):
        ConllDataModule(data["train"], data["dev"], model_scheme="IOB1")
    assert main(fit_args(data, tmp_path, "torch", ["--trainer.fast_dev_run", "1", "--data.model_scheme", "BIOES"])) == 0


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
def test_both_backends_give_the_same_emissions(data, decoder):
    dm = ConllDataModule(data["train"], data["dev"])
    torch.manual_seed(0)
    torch_model = NERTagger(**dm.vocabularies, word_dim=8, char_dim=6, char_hidden=5, hidden_size=8, num_layers=2,
                            decoder=decoder, backend="torch").eval()
    triton_model = NERTagger(**dm.vocabularies, word_dim=8, char_dim=6, char_hidden=5, hidden_size=8, num_layers=2,
                             decoder=decoder, backend="triton").eval()
    triton_model.load_state_dict(torch_model.state_dict())
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert torch.allclose(torch_model.emissions(batch), triton_model.emissions(batch), atol=1e-5)
    assert torch_model.tag(batch) == triton_model.tag(batch)


def test_training_learns_and_checkpoint_round_trips(data, tmp_path):
    code = main(fit_args(data, tmp_path, "torch", ["--trainer.max_epochs", "25", "--model.lr", "0.02",
                                                   "--trainer.enable_checkpointing", "true"]))
    assert code == 0
    ckpt = next(Path(tmp_path).rglob("*.ckpt"))
    # The test subcommand rebuilds the model from the checkpoint through the CLI.
    assert main(["test", *fit_args(data, tmp_path, "torch")[1:], "--ckpt_path", str(ckpt)]) == 0
    model = NERTagger.load_from_checkpoint(ckpt).eval()
    dm = ConllDataModule(data["train"], data["dev"], data["test"])
    dm.setup("test")
    predicted, gold = [], []
    for batch in dm.test_dataloader():
        predicted += model.tag(batch)
        gold += [[model.tag_names[i] for i in row[:n]] for row, n in zip(batch["tags"].tolist(), batch["mask"].sum(1).tolist())]
    metric = model.span_f1["test"]
    metric.update(predicted, gold)
    assert metric.compute()["f1"].item() > 0.8  # a learnable toy task


@pytest.mark.skipif(not CONLL2003.is_dir(), reason="CoNLL-2003 not present in ../shared/data")
def test_short_fit_on_conll2003_reads_the_files_and_learns():
    dm = ConllDataModule(str(CONLL2003 / "train.txt"), str(CONLL2003 / "dev.txt"), batch_size=32)
    assert len(dm.sentences("train")) == 14041 and len(dm.sentences("val")) == 3250
    assert set(dm.vocabularies["tags"].split("\n")) == {"O"} | {f"{p}-{t}" for p in "BI" for t in ("PER", "LOC", "ORG", "MISC")}
    torch.manual_seed(0)
    model = NERTagger(**dm.vocabularies, word_dim=32, char_dim=16, char_hidden=16, hidden_size=48, backend="torch", lr=0.01)
    dm.setup("fit")
    val = [b for _, b in zip(range(10), dm.val_dataloader())]

    def val_loss():
        model.eval()
        with torch.no_grad():
            return sum(model.loss(model.emissions(b), b["tags"], b["mask"]) for b in val).item()

    before = val_loss()
    optimizer = model.configure_optimizers()["optimizer"]  # the plateau schedule needs a Trainer; unused here
    model.train()
    for _, batch in zip(range(40), dm.train_dataloader()):  # ~1 minute on 2 cores
        loss = model.loss(model.emissions(batch), batch["tags"], batch["mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert val_loss() < 0.5 * before


def test_collate_pads_with_zeros():
    batch = collate([([3, 4], [[2], [3, 4]], [2, 1], [[5, 6], [7, 8]], [1, 0], [1, 2]),
                     ([5], [[2, 2, 2]], [3], [[9, 4]], [2], [3])])
    assert batch["chars"].shape == (2, 2, 3) and batch["mask"].tolist() == [[True, True], [True, False]]
    assert batch["cases"].tolist() == [[2, 1], [3, 0]] and batch["tags"].tolist() == [[1, 0], [2, 0]]
    assert batch["features"].tolist() == [[[5, 6], [7, 8]], [[9, 4], [0, 0]]]
    assert batch["forms"].tolist() == [[1, 2], [3, 0]]
    no_features = collate([([3], [[2]], [1], [[]], [0], [1])])
    assert no_features["features"].shape == (1, 1, 0)


def test_feature_columns_become_vocabularies_ids_and_embeddings(data):
    dm = ConllDataModule(data["train"], data["dev"], feature_columns=[1, 2])  # the generated POS and chunk columns
    features = dm.vocabularies["features"].split("\n")
    assert [line.split(" ") for line in features] == [["<pad>", "<unk>", "NNP"], ["<pad>", "<unk>", "B-NP"]]
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["features"].shape == (*batch["words"].shape, 2)
    assert bool((batch["features"][batch["mask"]] == 2).all()) and bool((batch["features"][~batch["mask"]] == 0).all())
    torch.manual_seed(0)
    model = NERTagger(**dm.vocabularies, word_dim=8, char_dim=6, char_hidden=5, feature_dim=4, hidden_size=8,
                      backend="torch").eval()
    assert model.net.word_rnn.input_size == 8 + 2 * 4 + 2 * 5
    before = model.emissions(batch)
    assert not torch.allclose(before, model.emissions(dict(batch, features=torch.where(batch["features"] > 0, 1, 0))))
    without = NERTagger(**dm.vocabularies, word_dim=8, char_dim=6, char_hidden=5, hidden_size=8, backend="torch")
    assert without.net.word_rnn.input_size == 8 + 2 * 5 and len(without.net.feature_embeddings) == 0


@pytest.mark.parametrize("columns, message", [([7], "outside the 4 columns"), ([0], "word or the tag"),
                                              ([-1], "word or the tag"), ([3], "word or the tag")])
def test_feature_column_errors(data, columns, message):
    with pytest.raises(ValueError, match=message):
        _ = ConllDataModule(data["train"], data["dev"], feature_columns=columns).vocabularies
    dm = ConllDataModule(data["train"], data["dev"])  # no feature columns: feature_dim makes no embeddings
    assert len(NERTagger(**dm.vocabularies, feature_dim=4).net.feature_embeddings) == 0


def test_feature_column_missing_from_the_validation_file(data, tmp_path):
    narrow = tmp_path / "dev.txt"
    narrow.write_text("Paris B-LOC\nis O\n\n")
    dm = ConllDataModule(data["train"], str(narrow), feature_columns=[2])
    assert dm.vocabularies["features"].split(" ")[2:] == ["B-NP"]
    with pytest.raises(ValueError, match=r"feature column 2 is outside the 2 columns of .*dev\.txt"):
        dm.setup("validate")


@pytest.mark.parametrize("word, shape", [
    ("the", "lower"), ("Paris", "title"), ("I", "title"), ("EU", "upper"), ("McDonald", "mixed"), ("iPhone", "mixed"),
    ("1996", "number"), ("3-1", "has_digit"), ("F16", "has_digit"), (".", "other"), ("--", "other"), ("U.S.", "upper"),
])
def test_casing(word, shape):
    assert CASINGS[casing(word) - 1] == shape


def test_digit_normalisation_shares_word_entries(data, tmp_path):
    f = tmp_path / "digits.txt"
    f.write_text("In NN O\n1996 CD O\nand CC O\n1997 CD O\nF16 NN B-MISC\n\n")
    plain, normalised = (ConllDataModule(str(f), str(f), normalize_digits=n, lowercase=n) for n in (False, True))
    assert set(plain.vocabularies["words"].split("\n")[2:]) == {"In", "1996", "and", "1997", "F16"}
    assert set(normalised.vocabularies["words"].split("\n")[2:]) == {"in", "0000", "and", "f00"}
    normalised.setup("validate")
    (words, _, cases, _, _, forms, gold), = normalised.data["val"]
    assert forms == [1, 2, 3, 2, 4] and gold is None  # every tag is known: no gold strings carried  # the two years share a form, as they share a word entry
    vocab = normalised.vocabularies["words"].split("\n")
    assert [vocab[i] for i in words] == ["in", "0000", "and", "0000", "f00"]
    assert [CASINGS[c - 1] for c in cases] == ["title", "number", "lower", "number", "has_digit"]


def test_casing_embedding_changes_the_emissions(data):
    dm = ConllDataModule(data["train"], data["dev"])
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    torch.manual_seed(0)
    model = NERTagger(**dm.vocabularies, word_dim=8, char_dim=6, char_hidden=5, case_dim=3, hidden_size=8,
                      backend="torch").eval()
    assert model.net.word_rnn.input_size == 8 + 3 + 2 * 5
    before = model.emissions(batch)
    other_cases = dict(batch, cases=torch.where(batch["mask"], 1 + (batch["cases"] % len(CASINGS)), 0))
    assert not torch.allclose(before, model.emissions(other_cases))
    with pytest.raises(ValueError, match="case_dim"):
        NERTagger(**dm.vocabularies, case_dim=-1)


# ---- any CoNLL-style file: `token<TAB>tag`, lower-case types, several tags, types unseen in training ----


def write_social(path, n, seed, extra=()):
    """A social-media style file: `token<TAB>tag`, lower-case entity types, no -DOCSTART-; `extra`
    sentences (lists of (token, tag)) are appended as they are."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        lines += [f"{w}\t{t.replace('PER', 'person').replace('LOC', 'location')}" for w, t in sentence(rng)] + [""]
    for tokens in extra:
        lines += [f"{w}\t{t}" for w, t in tokens] + [""]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_reader_tabs_any_tag_case_and_several_tags(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Ed\tb-person,B-location\nSheeran\tB-location,i-person\nin\to\nRome\tB-location,B-person\n\n"
                 "-X-\tI-group,B-corporation\n\n")
    with pytest.warns(UserWarning, match=r"a\.txt: 4 tokens carry several comma-joined tags \(first on line 1\)"):
        first, second = read_conll(f)
    # The first listed, unless another continues the entity open before it (Sheeran: I-person after B-person).
    assert first.tags == ["B-person", "I-person", "O", "B-location"]
    assert second.tags == ["I-group"] and first.columns[0] == ["Ed", "b-person,B-location"]
    assert spans(first.tags, "IOB2") == {("person", 0, 2), ("location", 3, 4)}
    f.write_text("a\tB-x,Q-y\n")
    with pytest.raises(ValueError, match=r"a\.txt:1: malformed tag 'Q-y'"):
        read_conll(f)


@pytest.fixture(scope="module")
def social(tmp_path_factory):
    d = tmp_path_factory.mktemp("social")
    unseen = [[("saw", "O"), ("Star", "B-creative-work"), ("Wars", "I-creative-work"), ("today", "O")],
              [("Alice", "B-person,B-location"), ("Smith", "I-person"), ("Intel", "B-corporation")]]
    return {"train": write_social(d / "train.txt", 48, 0), "dev": write_social(d / "dev.txt", 16, 1),
            "test": write_social(d / "test.txt", 16, 2, extra=unseen)}


def test_types_unseen_in_training_are_scored_as_missed(social):
    dm = ConllDataModule(social["train"], social["dev"], social["test"], feature_columns=[1, 2], batch_size=64)
    with pytest.warns(UserWarning, match=r"feature_columns \[1, 2\] are ignored"):
        vocabularies = dm.vocabularies
    assert vocabularies["features"] == "" and "B-creative-work" not in vocabularies["tags"].split("\n")
    with pytest.warns(UserWarning) as caught:
        dm.setup("test")
    messages = [str(w.message) for w in caught]
    assert any("tag type 'creative-work' does not occur in the training data" in m and "2 tokens" in m
               and "test.txt" in m for m in messages), messages
    assert any("tag type 'corporation'" in m and "1 token of" in m for m in messages), messages
    (batch,) = list(dm.test_dataloader())
    assert sum(g is not None for g in batch["gold"]) == 2
    torch.manual_seed(0)
    # The committed config's feature_dim with data that has no feature columns: no feature embeddings.
    model = NERTagger(**vocabularies, word_dim=8, char_dim=6, char_hidden=5, hidden_size=8, feature_dim=16,
                      backend="torch").eval()
    assert len(model.net.feature_embeddings) == 0
    with torch.no_grad():
        model.test_step(batch, 0)
    scores = model.span_f1["test"].compute()
    predicted = model.tag(batch)
    gold = [g or [model.tag_names[i] for i in row[:n]]
            for g, row, n in zip(batch["gold"], batch["tags"].tolist(), batch["mask"].sum(1).tolist())]
    expected = [kind for g in gold for kind, _, _ in spans(g, "IOB2")]
    assert sum(kind in ("creative-work", "corporation") for kind in expected) == 2
    found = sum(len(spans(p, "IOB2") & spans(g, "IOB2")) for p, g in zip(predicted, gold))
    assert scores["recall"].item() == pytest.approx(found / len(expected))  # the unseen ones are all missed
    assert scores["f1_unseen"].item() == 0.0


def test_social_media_file_with_the_committed_config(social, tmp_path):
    """configs/ner.yaml (feature columns, feature_dim 16) on `token<TAB>tag` files, then `ner test` on a test
    file with several tags on a token and types the training data lacks."""
    common = ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "ner.yaml"),
              "--data.train_path", social["train"], "--data.val_path", social["dev"], "--data.test_path",
              social["test"], "--model.word_dim", "8", "--model.char_dim", "6", "--model.char_hidden", "5",
              "--model.hidden_size", "8", "--model.backend", "torch", "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    fit = ["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
           "--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.dirpath={tmp_path}",
           "--trainer.callbacks.filename=final"]
    assert main(fit) == 0
    with pytest.warns(UserWarning, match="tag type 'creative-work' does not occur in the training data"):
        assert main(["test", *common, "--ckpt_path", str(tmp_path / "final.ckpt")]) == 0


def tag_command(ckpt, text, monkeypatch, capsys, *options):
    """`fusedrnn ner tag` on `text` as stdin: (exit status, stdout, stderr)."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    code = main(["tag", "--ckpt_path", str(ckpt), "--device", "cpu", *options])
    out, err = capsys.readouterr()
    return code, out, err


def trained_checkpoint(data, tmp_path, extra=()):
    assert main(fit_args(data, tmp_path, "torch", ["--trainer.max_epochs", "2", "--trainer.enable_checkpointing",
                                                   "true", "--data.batch_size", "8", *extra])) == 0
    return next(Path(tmp_path).rglob("*.ckpt"))


def test_tag_command_tags_as_the_trained_data_module_encodes(data, tmp_path, monkeypatch, capsys):
    """CoNLL input through `ner tag` gets the tags the model gives the data module's own batches of the same
    file (features read from their columns, digits normalised, document context pooled per document);
    the output keeps the input's columns and adds the tag."""
    extra = ["--data.feature_columns", "[1, 2]", "--model.feature_dim", "3", "--model.case_dim", "2",
             "--data.normalize_digits", "true", "--data.batch_by_document", "true", "--model.document_context", "true"]
    ckpt = trained_checkpoint(data, tmp_path, extra)
    text = Path(data["test"]).read_text()
    code, out, _ = tag_command(ckpt, text, monkeypatch, capsys, "--format", "conll", "--batch_size", "8")
    assert code == 0
    blocks = [block.split("\n") for block in out.strip("\n").split("\n\n")]
    assert blocks[0] == ["-DOCSTART- -X- -X- O"]
    token_lines = [line for block in blocks[1:] for line in block]
    assert [line.split()[:4] for line in token_lines] == [line.split() for line in text.splitlines()[2:] if line]

    model = NERTagger.load_from_checkpoint(ckpt).eval()
    dm = ConllDataModule(data["train"], data["dev"], data["test"], feature_columns=[1, 2], normalize_digits=True,
                         batch_by_document=True, batch_size=8)
    dm.setup("test")
    expected = [tag for batch in dm.test_dataloader() for row in model.tag(batch) for tag in row]
    assert [line.split()[4] for line in token_lines] == expected
    # The encoding itself: word, character, casing, feature and form ids as training's (not the tags).
    tagger = NERTagger.from_checkpoint(ckpt)
    encoded = tagging.data_for(tagger, tagger.saved_data_options).encode(tagging.read_untagged(text, True).sentences)
    assert [item[:4] + item[5:6] for item in encoded] == [item[:4] + item[5:6] for item in dm.data["test"]]
    assert len(set(expected)) > 1  # a model that tags everything O would match anything

    code, _, err = tag_command(ckpt, "Alice met Bob\n", monkeypatch, capsys)
    assert code == 2 and "reads feature columns [1, 2]" in err and "--format conll" in err
    code, _, err = tag_command(ckpt, "Alice\n", monkeypatch, capsys, "--format", "conll")
    assert code == 2 and "column 1" in err


def test_tag_command_reads_plain_text_as_conll(data, tmp_path, monkeypatch, capsys):
    """A sentence per line (blank lines between documents) tags as the same tokens in CoNLL layout; a
    checkpoint without its data options, or not a tagger's, is refused in one line."""
    ckpt = trained_checkpoint(data, tmp_path, ["--model.document_context", "true"])
    text = "Alice met Bob in Paris .\nEve went to Lima\n\nBob Smith met Alice in Oslo\n"
    code, out, _ = tag_command(ckpt, text, monkeypatch, capsys)
    assert code == 0
    lines = out.split("\n")
    assert [line.split()[0] for line in lines if line] == text.split()
    conll = "\n".join("\n".join(sentence.split()) + "\n" for sentence in text.split("\n") if sentence)
    conll = conll.replace("Lima\n\n", "Lima\n\n-DOCSTART-\n\n")  # the blank line: a new document
    code, as_conll, _ = tag_command(ckpt, conll, monkeypatch, capsys, "--format", "conll")
    assert code == 0 and as_conll.replace("-DOCSTART-\n\n", "") == out

    checkpoint = torch.load(ckpt, weights_only=True)
    del checkpoint["datamodule_hyper_parameters"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    code, _, err = tag_command(tmp_path / "old.ckpt", text, monkeypatch, capsys)
    assert code == 2 and "does not record its data options" in err
    code, _, err = tag_command(tmp_path / "missing.ckpt", text, monkeypatch, capsys)
    assert code == 2 and "does not exist" in err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Zoë met Bob\n".encode("latin-1"))))
    assert main(["tag", "--ckpt_path", str(ckpt), "--device", "cpu"]) == 2
    assert "stdin is not UTF-8 text" in capsys.readouterr().err
