"""The same weights and the same random inputs for every provider of a case."""

from dataclasses import dataclass

import torch
from torch import nn

from fusedrnn.bench.grid import Case
from fusedrnn.cells import REGISTRY, cell
from fusedrnn.nn import FUSED_CELLS, FUSED_LAYERS

# (case kind, mode) -> the torch class and its fused twin, from the cell registry.
TORCH_CLASSES = {(kind, mode): getattr(entry, "layer" if kind == "sequence" else "cell")
                 for mode, entry in REGISTRY.items() for kind in ("sequence", "step")}
FUSED_CLASSES = {("sequence", mode): FUSED_LAYERS[mode] for mode in REGISTRY}
FUSED_CLASSES.update({("step", mode): FUSED_CELLS[mode] for mode in REGISTRY})


def new_module(module_class, case: Case, device: torch.device, dtype: torch.dtype, **options) -> nn.Module:
    """An instance of a torch-style class (torch's own or a fused twin) with the case's sizes."""
    factory = dict(device=device, dtype=dtype)
    if case.kind == "sequence":
        return module_class(case.input_size, case.hidden, num_layers=case.layers, bidirectional=case.bidirectional,
                            **factory, **options)
    return module_class(case.input_size, case.hidden, **factory, **options)


def make_template(case: Case, device: torch.device, seed: int = 0) -> nn.Module:
    """The torch module whose weights every provider copies: torch's init range, drawn from a fixed seed,
    in the case's dtype."""
    template = new_module(TORCH_CLASSES[case.kind, case.cell], case, device, torch.float32)
    generator = torch.Generator(device=device).manual_seed(seed)
    bound = case.hidden**-0.5
    with torch.no_grad():
        for p in template.parameters():
            p.uniform_(-bound, bound, generator=generator)
    return template.to(case.dtype)


def copy_of(template: nn.Module, module_class, case: Case, **options) -> nn.Module:
    """A `module_class` (same sizes, device and dtype as the template) holding the template's weights."""
    weight = next(template.parameters())
    module = new_module(module_class, case, weight.device, weight.dtype, **options)
    module.load_state_dict(template.state_dict())
    return module


def has_cell_state(case: Case) -> bool:
    return cell(case.cell).has_cell_state


def output_names(case: Case) -> list[str]:
    if case.kind == "sequence":
        return ["output", "h_n", "c_n"] if has_cell_state(case) else ["output", "h_n"]
    return ["h", "c"] if has_cell_state(case) else ["h"]


def state_names(case: Case) -> list[str]:
    return ["h0", "c0"] if has_cell_state(case) else ["h0"]


@dataclass
class Inputs:
    """One draw: the input, the initial states and an upstream gradient for every output. All are leaves
    that require grad, in the case's dtype."""

    x: torch.Tensor
    states: tuple[torch.Tensor, ...]
    upstream: list[torch.Tensor]

    def leaves(self) -> list[torch.Tensor]:
        return [self.x, *self.states]

    def to(self, dtype: torch.dtype) -> "Inputs":
        def cast(t):
            return t.detach().to(dtype).requires_grad_(t.requires_grad)

        return Inputs(cast(self.x), tuple(cast(s) for s in self.states), [cast(g) for g in self.upstream])


def draw_inputs(case: Case, device: torch.device, seed: int) -> Inputs:
    """Fresh N(0, 1) inputs, states and upstream gradients (never zeros), time-major like torch's default."""
    generator = torch.Generator(device=device).manual_seed(1000 + seed)

    def randn(*shape, requires_grad=True):
        t = torch.randn(*shape, generator=generator, device=device, dtype=torch.float32)
        return t.to(case.dtype).requires_grad_(requires_grad)

    directions = 2 if case.bidirectional else 1
    if case.kind == "sequence":
        x = randn(case.seq_len, case.batch, case.input_size)
        state_shape = (case.layers * directions, case.batch, case.hidden)
        output_shapes = [(case.seq_len, case.batch, directions * case.hidden)]
    else:
        x = randn(case.batch, case.input_size)
        state_shape = (case.batch, case.hidden)
        output_shapes = []
    states = tuple(randn(*state_shape) for _ in state_names(case))
    output_shapes += [state_shape] * len(states)
    upstream = [randn(*shape, requires_grad=False) for shape in output_shapes]
    return Inputs(x, states, upstream)
