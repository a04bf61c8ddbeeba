"""fusedrnn.convert swaps the torch RNNs of a model tree in place and keeps everything else."""

import torch
from torch import nn

import fusedrnn
from fusedrnn.testing import assert_close


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.encoder = nn.Sequential(nn.Linear(6, 6))
        self.rnns = nn.ModuleList([nn.LSTM(6, 5, bidirectional=True, batch_first=True), nn.GRU(10, 4)])
        self.cells = nn.ModuleDict({"lstm": nn.LSTMCell(4, 3), "gru": nn.GRUCell(4, 3)})
        self.deep = nn.Sequential(nn.Sequential(nn.GRU(4, 4, num_layers=2, dropout=0.2)))

    def forward(self, tokens):
        x = self.encoder(self.embed(tokens))
        x, _ = self.rnns[0](x)
        x, _ = self.rnns[1](x.transpose(0, 1))
        x, _ = self.deep(x)
        h, c = self.cells["lstm"](x[-1])
        return h + self.cells["gru"](x[-1]) + c


class CustomLSTM(nn.LSTM):
    def forward(self, input, hx=None):
        return super().forward(input * 2, hx)


def test_convert_round_trip_keeps_outputs_and_state_dict():
    torch.manual_seed(0)
    model = Tagger().eval()  # eval: the deep GRU has dropout
    tokens = torch.randint(0, 20, (3, 7))
    expected = model(tokens)
    params_before = {n: p for n, p in model.named_parameters()}
    state = model.state_dict()

    converted = fusedrnn.convert(model, backend="triton")
    assert converted is model
    assert type(model.rnns[0]) is fusedrnn.LSTM and type(model.rnns[1]) is fusedrnn.GRU
    assert type(model.cells["lstm"]) is fusedrnn.LSTMCell and type(model.cells["gru"]) is fusedrnn.GRUCell
    assert type(model.deep[0][0]) is fusedrnn.GRU and model.deep[0][0].dropout == 0.2
    assert all(m.backend == "triton" for m in model.modules() if hasattr(m, "backend"))
    assert not any(m.training for m in model.modules())
    # The same Parameter objects: an optimizer built before the swap still updates the model.
    assert all(p is params_before[n] for n, p in model.named_parameters())
    assert_close(model(tokens), expected)

    original = Tagger().eval()
    original.load_state_dict(model.state_dict())
    assert_close(original(tokens), expected)
    model.load_state_dict(state)


def test_convert_keeps_mode_requires_grad_dtype_and_hooks():
    lstm = nn.LSTM(3, 4, dtype=torch.float64).eval()
    lstm.weight_hh_l0.requires_grad_(False)
    seen = []
    lstm.register_forward_hook(lambda m, i, o: seen.append(1))
    fused = fusedrnn.convert(lstm, backend="torch")
    assert type(fused) is fusedrnn.LSTM and not fused.training
    assert not fused.weight_hh_l0.requires_grad and fused.weight_ih_l0.requires_grad
    assert fused.weight_ih_l0.dtype == torch.float64
    fused(torch.randn(2, 1, 3, dtype=torch.float64))
    assert seen == [1]
    assert fused.backend == "torch"


def test_subclasses_left_alone_unless_asked():
    model = nn.Sequential(CustomLSTM(3, 4), nn.LSTM(4, 4))
    fusedrnn.convert(model)
    assert type(model[0]) is CustomLSTM and type(model[1]) is fusedrnn.LSTM
    fusedrnn.convert(model, subclasses=True)
    assert type(model[0]) is fusedrnn.LSTM


def test_convert_sets_backend_of_already_fused_modules():
    model = nn.Sequential(fusedrnn.GRU(3, 4, backend="torch"))
    fusedrnn.convert(model, backend="triton")
    assert model[0].backend == "triton"
    nn_rnn = nn.RNN(3, 4, nonlinearity="relu")
    fused = fusedrnn.convert(nn_rnn, backend="triton")  # the Elman RNN has its fused twin too
    assert type(fused) is fusedrnn.RNN and fused.mode == "RNN_RELU" and fused.weight_hh_l0 is nn_rnn.weight_hh_l0


def test_verbose_says_what_was_swapped_and_what_was_left_alone_and_why(capsys):
    class CustomGRU(nn.GRU):
        pass

    model = nn.Sequential(nn.Linear(2, 3), nn.LSTM(3, 4), CustomGRU(4, 4), fusedrnn.RNNCell(4, 4))
    fusedrnn.convert(model, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "swapped 1: torch.nn.modules.rnn.LSTM -> fusedrnn.LSTM",
        "left 2 alone: CustomGRU subclasses nn.GRU and may override forward; pass subclasses=True to replace it by "
        "the plain fused class",
        "kept 3: already fused (RNNCell)",
    ]
    assert type(model[1]) is fusedrnn.LSTM and type(model[2]) is CustomGRU
    fusedrnn.convert(nn.Linear(2, 2), verbose=True)
    assert capsys.readouterr().out == "fusedrnn.convert: no RNN module found\n"
    fusedrnn.convert(model, verbose=False)
    assert capsys.readouterr().out == ""
