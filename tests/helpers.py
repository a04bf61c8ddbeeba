"""Shared test machinery: random inputs, upstream gradients on every output, and comparisons."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusedrnn.testing import assert_close

# The gated cells run the full batteries; the Elman modes (one gate, no saved activations) have their own,
# smaller one in test_elman.py, which keeps the interpreter suite within CI's time.
GATED_MODES = ("LSTM", "GRU")


def leaves(tensors):
    return [t for t in tensors if t is not None and t.requires_grad]


def flat_outputs(out):
    """(output, states) of an RNN module, or a cell's result, as a flat list of tensors."""
    if isinstance(out, torch.Tensor):
        return [out]
    flat = []
    for o in out:
        if isinstance(o, torch.nn.utils.rnn.PackedSequence):
            flat.append(o.data)
        elif isinstance(o, (tuple, list)):
            flat.extend(o)
        else:
            flat.append(o)
    return flat


def outputs_and_grads(outputs, inputs, upstream):
    """Outputs and the gradients of sum(output * upstream) with respect to inputs."""
    grads = torch.autograd.grad(outputs, inputs, upstream, allow_unused=True)
    return outputs, grads


def assert_all_close(actual, expected, dtype, names):
    assert len(actual) == len(expected) == len(names)
    for a, e, n in zip(actual, expected, names):
        if e is None:
            assert a is None or bool((a == 0).all()), f"{n}: expected no gradient"
            continue
        assert a is not None, f"{n}: gradient missing"
        assert_close(a, e, dtype, name=n)


def random_like_module(module, scale=0.5, seed=0):
    """Re-draw all parameters from N(0, scale^2) (not torch's init, to exercise saturating gates)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return module


def make_input(x, *, batch_first=False, unbatched=False, lengths=None, enforce_sorted=False):
    """The user-facing input built from a padded tensor x ((T, B, I), or (B, T, I) if batch_first)."""
    from torch.nn.utils.rnn import pack_padded_sequence

    if lengths is not None:
        if enforce_sorted:
            assert list(lengths) == sorted(lengths, reverse=True)
        return pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted)
    if unbatched:
        return x.squeeze(0 if batch_first else 1)
    return x


def canonical(out, batch_first=False):
    """Flat list of an RNN module's outputs, a packed output turned back into a padded tensor."""
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

    output, states = out
    if isinstance(output, PackedSequence):
        output = pad_packed_sequence(output, batch_first=batch_first)[0]
    return [output, *(states if isinstance(states, tuple) else (states,))]


def reference_forward(module, input, hx=None, dropout=0.0):
    """What `module` (a torch-style LSTM or GRU) returns, computed by fusedrnn.reference."""
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

    from fusedrnn import reference

    mode = module.mode
    D = 2 if module.bidirectional else 1
    lengths = None
    unbatched = False
    if isinstance(input, PackedSequence):
        x, lengths = pad_packed_sequence(input)
    else:
        unbatched = input.dim() == 2
        x = input.unsqueeze(0 if module.batch_first else 1) if unbatched else input
        x = x.transpose(0, 1) if module.batch_first else x
    states = (hx if mode == "LSTM" else (hx,)) if hx is not None else None
    if states is not None and unbatched:
        states = tuple(s.unsqueeze(1) for s in states)
    if states is None:
        zeros = x.new_zeros(module.num_layers * D, x.size(1), module.hidden_size)
        h_zeros = x.new_zeros(module.num_layers * D, x.size(1), getattr(module, "proj_size", 0) or module.hidden_size)
        states = (h_zeros, zeros) if mode == "LSTM" else (zeros,)
    y, finals = reference.rnn(mode, x, states, reference.module_weights(module), module.bidirectional, lengths, dropout)
    if lengths is not None:
        output = pack_padded_sequence(y, lengths, enforce_sorted=False)
    else:
        output = y.transpose(0, 1) if module.batch_first else y
        if unbatched:
            output = output.squeeze(0 if module.batch_first else 1)
            finals = tuple(s.squeeze(1) for s in finals)
    return output, (finals if mode == "LSTM" else finals[0])


def recurrence_leaves(mode, T, B, H, seed):
    """Random float64 inputs of one direction's recurrence for gradcheck, each requiring grad: gx (T, B, G*H),
    w_hh (G*H, H) at half scale, b_hh (G*H,) and the cell's initial states, each (B, H); and the generator, to
    draw more from."""
    from fusedrnn.cells import REGISTRY, cell

    g = torch.Generator().manual_seed(seed)
    gates = cell(mode).gates
    gx = torch.randn(T, B, gates * H, generator=g, dtype=torch.float64, requires_grad=True)
    w_hh = (torch.randn(gates * H, H, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    b_hh = torch.randn(gates * H, generator=g, dtype=torch.float64, requires_grad=True)
    initial = tuple(torch.randn(B, H, generator=g, dtype=torch.float64, requires_grad=True)
                    for _ in range(REGISTRY[mode].states))
    return gx, w_hh, b_hh, initial, g


class OpRecorder(TorchDispatchMode):
    """The ops called at the top level while active, with their arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((str(func), args))
        return func(*args, **(kwargs or {}))


def refuse_op(monkeypatch, wrapper):
    """Makes the custom op behind one of fusedrnn.ops' wrappers fail if called."""
    def refuse(*args):
        raise AssertionError(f"the custom op {wrapper.op._name} ran")

    monkeypatch.setattr(wrapper, "op", refuse)
