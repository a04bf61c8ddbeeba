"""What worked before lightning_modules was split into charlm/, ner/, seq2seq/ and common/ still works: the
old module paths (configs, saved configs and checkpoints name them), the old CLI modules under `python -m`,
and checkpoints whose network parameters lack the `net.` prefix the split gave them."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("torchmetrics")

from fusedrnn.lightning_modules import CharLM, NERTagger, Seq2Seq  # noqa: E402
from fusedrnn.lightning_modules.charlm import cli as charlm_cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
P = "fusedrnn.lightning_modules"


def moved(old: str, new: str, names: str) -> list[tuple[str, str]]:
    """(old dotted path, new dotted path) of each name; "Old=New" where the name changed too."""
    pairs = [(name.split("=")[0], name.split("=")[-1]) for name in names.split()]
    return [(f"{P}.{old}.{o}", f"{P}.{new}.{n}") for o, n in pairs]


OLD_PATHS = [
    *moved("charlm", "charlm.model", "CharLM loss_metrics LN2"),
    *moved("charlm_cli", "charlm.cli", "main sample sample_parser train PROG USAGE"),
    *moved("text_data", "charlm.data", "CharVocab TextDataModule ContiguousBatches read_text download TINY_SHAKESPEARE_URL"),
    *moved("ner", "ner.model", "NERTagger confusion_table UNK_ID"),
    *moved("ner", "ner.net", "other_occurrences_mean"),
    *moved("ner_cli", "ner.cli", "main train USAGE"),
    *moved("conll_data", "ner.data", "ConllDataModule DocumentBatches Sentence TaggedBatch CASINGS PAD UNK casing "
           "collate read_conll tag_list Vocabulary=NERVocab"),
    *moved("crf", "ner.crf", "LinearChainCRF FORBIDDEN"),
    *moved("span_f1", "ner.span_f1", "SpanF1"),
    *moved("tag_schemes", "ner.tag_schemes", "SCHEMES MODEL_SCHEMES allowed_transition check_scheme convert "
           "iob1_to_iob2 read_as spans split_tag"),
    *moved("seq2seq", "seq2seq.model", "Seq2Seq"),
    *moved("seq2seq", "seq2seq.net", "Attention Memory State"),
    *moved("seq2seq_cli", "seq2seq.cli", "main train translate translate_parser PROG USAGE"),
    *moved("parallel_data", "seq2seq.data", "ParallelDataModule Examples LengthBatches SPECIALS PAD UNK BOS EOS "
           "tokenize detokenize read_lines read_parallel Vocab=Seq2SeqVocab"),
    *moved("training_cli", "common.training_cli", "Link LogConfigCallback TrainingCLI run_training_cli"),
    *moved("model_command", "common.model_command", "checkpoint_parser load_for_command run_model_command"),
    *moved("optim", "common.optim", "LR_SCHEDULES adamw_with_schedule check_lr_schedule"),
    *moved("callbacks", "common.callbacks", "GradNorm PeakMemory TextSampleTable TokenThroughput"),
    *moved("checkpoints", "common.checkpoints", "load_model"),
    *moved("wandb_logger", "common.wandb_logger", "WandbLogger MISSING_WANDB wandb_login_configured"),
    # The package's own names, the shortest paths LightningCLI records.
    *[(f"{P}.{name}", f"{P}.{home}.{name}") for name, home in (
        ("CharLM", "charlm.model"), ("CharVocab", "charlm.data"), ("TextDataModule", "charlm.data"),
        ("NERTagger", "ner.model"), ("ConllDataModule", "ner.data"), ("LinearChainCRF", "ner.crf"),
        ("SpanF1", "ner.span_f1"), ("Seq2Seq", "seq2seq.model"), ("ParallelDataModule", "seq2seq.data"),
    )],
]


def resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("old, new", OLD_PATHS, ids=[old.removeprefix(P + ".") for old, _ in OLD_PATHS])
def test_old_path_is_the_new_object(old, new):
    assert resolve(old) is resolve(new)


def test_config_class_paths_resolve():
    """The class paths of the committed configs, and those configs wrote before the split."""
    written = {m for path in (REPO / "configs").glob("*.yaml") for m in re.findall(r"class_path: (\S+)", path.read_text())}
    before = {f"{P}.wandb_logger.WandbLogger", f"{P}.callbacks.TextSampleTable"}
    for path in written | before:
        assert isinstance(resolve(path), type), path


@pytest.mark.parametrize("module", ["charlm_cli", "ner_cli", "seq2seq_cli"])
def test_old_cli_modules_run_with_python_m(module):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", f"{P}.{module}"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stdout.startswith(f"usage: fusedrnn {module.removesuffix('_cli')} ")


# ---- checkpoints of the old layout -----------------------------------------------------------------

# The state-dict keys the models wrote before the split (tiny settings: one layer, LSTM or GRU).
OLD_KEYS = {
    "charlm": [
        "embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
        "head.weight", "head.bias",
    ],
    "ner": [
        "word_embedding.weight", "char_embedding.weight",
        *(f"{rnn}.{p}_l0{d}" for rnn in ("char_rnn", "word_rnn") for d in ("", "_reverse")
          for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        "emit.weight", "emit.bias", "crf.transitions", "crf.start", "crf.end",
    ],
    "seq2seq": [
        "src_embedding.weight",
        *(f"encoder.{p}_l0{d}" for d in ("", "_reverse") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        "bridge.weight", "bridge.bias", "tgt_embedding.weight",
        "decoder.weight_ih", "decoder.weight_hh", "decoder.bias_ih", "decoder.bias_hh",
        "attention.key_proj.weight", "attention.query_proj.weight", "attention.query_proj.bias", "attention.v.weight",
        "combine.weight", "output.weight", "output.bias",
    ],
}
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
MODELS = {
    "charlm": lambda: CharLM("abc ", embedding_dim=4, hidden_size=6, num_layers=1, backend="torch"),
    "ner": lambda: NERTagger("<pad>\n<unk>\na", "<pad>\n<unk>\na", "O\nB-PER\nI-PER", word_dim=4, char_dim=3,
                             char_hidden=2, hidden_size=4, backend="torch"),
    "seq2seq": lambda: Seq2Seq("\n".join(SPECIALS + ["a"]), "\n".join(SPECIALS + ["b"]), embedding_dim=4, hidden_size=6,
                               attention_size=3, backend="torch"),
}


def old_layout(state_dict: dict) -> dict:
    """`state_dict` with the keys of before the split: the network's parameters without `net.`."""
    return {key.removeprefix("net."): value for key, value in state_dict.items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_old_layout_state_dict_loads(name):
    torch.manual_seed(0)
    trained = MODELS[name]()
    old = old_layout(trained.state_dict())
    assert list(old) == OLD_KEYS[name]  # the renaming gives exactly what the old code wrote
    torch.manual_seed(1)
    fresh = MODELS[name]()
    fresh.load_state_dict(old)  # strict: every key found, none left over
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_old_layout_checkpoint_samples_and_validates(tmp_path):
    """A real char-LM checkpoint rewritten to the old layout, loaded by `from_checkpoint`, by Lightning's
    `load_from_checkpoint` and by `fusedrnn charlm validate --ckpt_path`."""
    words = "the king shall love my lord and night to of sweet fair hath thee".split()
    text = tmp_path / "words.txt"
    text.write_text(" ".join(words[i] for i in torch.randint(len(words), (1500,), generator=torch.Generator().manual_seed(0))))
    common = ["--data.path", str(text), "--data.batch_size", "4", "--data.seq_len", "16", "--model.embedding_dim", "8",
              "--model.hidden_size", "8", "--model.num_layers", "1", "--model.backend", "torch", "--trainer.logger", "false",
              "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path / "run")]
    fit = ["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    assert charlm_cli.main(fit) == 0
    (new_ckpt,) = (tmp_path / "run" / "checkpoints").glob("*.ckpt")
    checkpoint = torch.load(new_ckpt, weights_only=False)
    checkpoint["state_dict"] = old_layout(checkpoint["state_dict"])
    old_ckpt = tmp_path / "old.ckpt"
    torch.save(checkpoint, old_ckpt)
    expected = CharLM.from_checkpoint(new_ckpt).generate("the ", 40, seed=0)
    assert CharLM.from_checkpoint(old_ckpt).generate("the ", 40, seed=0) == expected
    assert CharLM.load_from_checkpoint(old_ckpt, map_location="cpu").generate("the ", 40, seed=0) == expected
    assert charlm_cli.main(["validate", *common, "--ckpt_path", str(old_ckpt)]) == 0
