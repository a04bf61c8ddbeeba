"""The markdown summary of a run: speedups per shape, memory, the grad check, fusedrnn's performance
targets for each fused strategy, and which providers sat out and why. Built from the result rows alone."""

from fusedrnn.bench import speed_bar
from fusedrnn.bench.grid import PUBLISHED
from fusedrnn.bench.providers import FUSED_STRATEGIES, PROVIDERS
from fusedrnn.bench.results import FORWARD, FORWARD_BACKWARD, STEP, STEP_FORWARD_BACKWARD, STEP_PASSES, number
from fusedrnn.bench.suites import INTERPRETER_NOTE, RunConfig

# fusedrnn's performance targets for every fused strategy on a GPU, forward+backward: speed vs cuDNN,
# speed vs the cell loop, and peak memory vs cuDNN.
BAR_MIN_SPEEDUP, BAR_MIN_VS_LOOP, BAR_MAX_MEMORY = 0.5, 3.0, 1.2
CASE_FIELDS = ("cell", "dtype", "batch", "hidden", "seq_len", "input_size", "layers", "bidirectional")
INTERPRETED_MARK = " †"


def _case_key(row: dict) -> tuple:
    return tuple(row[f] for f in CASE_FIELDS)


def _case_label(row: dict) -> str:
    label = f"{row['cell']} {row['dtype']} B={row['batch']} H={row['hidden']}"
    if row["pass"] not in STEP_PASSES:
        label += f" T={row['seq_len']}"
    if row["input_size"] != row["hidden"]:
        label += f" I={row['input_size']}"
    if int(row["layers"]) > 1:
        label += f" L={row['layers']}"
    if row["bidirectional"] in (True, "True"):
        label += " bidir"
    return label


def _ms(row: dict) -> str:
    return f"{float(row['median_ms']):.3g} ms [{float(row['p20_ms']):.3g}, {float(row['p80_ms']):.3g}]"


def _grad_failed(row: dict) -> bool:
    return row["grad_ok"] in (False, "False")


def _speed_cell(row: dict | None) -> str:
    if row is None:
        return "—"
    if _grad_failed(row):
        return "grad check failed"
    if number(row["median_ms"]) is None:
        return "error" if row["grad_ok"] in (None, "") else "not timed"
    mark = INTERPRETED_MARK if INTERPRETER_NOTE in row["note"] else ""
    speedup = number(row["speedup_vs_cudnn"])
    prefix = f"{speedup:.3g}x, " if speedup is not None else ""
    return prefix + _ms(row) + mark


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def _by_case(rows: list[dict], pass_name: str) -> dict[tuple, dict[str, dict]]:
    cases: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        if row["pass"] == pass_name:
            cases.setdefault(_case_key(row), {})[row["provider"]] = row
    return cases


def _providers_in(rows: list[dict]) -> list[str]:
    """Providers present in the rows: baselines first, then in registry order."""
    order = list(PROVIDERS)
    names = dict.fromkeys(row["provider"] for row in rows)
    baselines = {row["baseline"] for row in rows}
    return sorted(names, key=lambda n: (n not in baselines, order.index(n) if n in order else len(order)))


def _speed_section(rows: list[dict], pass_name: str, title: str) -> list[str]:
    cases = {key: by for key, by in _by_case(rows, pass_name).items()
             if any(number(r["median_ms"]) is not None for r in by.values())}
    if not cases:
        return []
    baseline = next(iter(next(iter(cases.values())).values()))["baseline"]
    others = [p for p in _providers_in(rows) if p != baseline and any(p in by for by in cases.values())]
    body = []
    for by in cases.values():
        any_row = next(iter(by.values()))
        base = by.get(baseline)
        base_text = _ms(base) if base is not None and number(base["median_ms"]) is not None else _speed_cell(base)
        body.append([_case_label(any_row), base_text, *(_speed_cell(by.get(p)) for p in others)])
    header = ["case", f"{baseline} (baseline)", *others]
    return [f"## {title}", "", f"Speedup = {baseline} median / provider median (above 1: faster than {baseline}).", "",
            *_table(header, body), ""]


def _memory_section(rows: list[dict], config: RunConfig) -> list[str]:
    if "memory" not in config.suites:
        return []
    cases = {key: by for key, by in _by_case(rows, FORWARD_BACKWARD).items()
             if any(number(r["peak_mem_mb"]) is not None for r in by.values())}
    if not cases:
        return ["## Peak memory, forward+backward", "", "Measured on CUDA only (torch.cuda.max_memory_allocated); "
                "this run had none.", ""]
    baseline = next(iter(next(iter(cases.values())).values()))["baseline"]
    others = [p for p in _providers_in(rows) if p != baseline and any(p in by for by in cases.values())]

    def cell(row):
        if row is None:
            return "—"
        if _grad_failed(row):
            return "grad check failed"
        peak, ratio = number(row["peak_mem_mb"]), number(row["mem_vs_cudnn"])
        if peak is None:
            return "—"
        return (f"{ratio:.2f}x, " if ratio is not None else "") + f"{peak:.1f} MB"

    def base_cell(row):
        peak = number(row["peak_mem_mb"]) if row is not None else None
        return f"{peak:.1f} MB" if peak is not None else "—"

    body = [[_case_label(next(iter(by.values()))), base_cell(by.get(baseline)), *(cell(by.get(p)) for p in others)]
            for by in cases.values()]
    return ["## Peak memory, forward+backward", "",
            f"Peak allocated beyond weights and inputs; ratio = provider / {baseline}.", "",
            *_table(["case", f"{baseline} (baseline)", *others], body), ""]


def _grad_section(rows: list[dict]) -> list[str]:
    checked = [r for r in rows if r["pass"] in (FORWARD_BACKWARD, STEP)]
    if not checked:
        return []
    cases: dict[tuple, dict[str, dict]] = {}
    for row in checked:
        cases.setdefault((row["pass"], *_case_key(row)), {})[row["provider"]] = row
    providers = _providers_in(checked)

    def cell(row):
        if row is None:
            return "—"
        rel = number(row["rel_err"])
        if rel is None:
            return "error"
        ratio = number(row["err_vs_reference_ratio"])
        verdict = "FAIL" if _grad_failed(row) else "ok"
        return f"{verdict} {rel:.2g}" + (f" ({ratio:.2g}x)" if ratio is not None else "")

    body = [[_case_label(next(iter(by.values()))), *(cell(by.get(p)) for p in providers)] for by in cases.values()]
    return ["## Gradient check", "",
            "Largest normwise relative error over the outputs and every gradient (input, h0, c0, weights, biases) "
            "against torch.nn in float64 on the same inputs and upstream gradients; in parentheses, that error "
            "divided by the baseline's. A tensor passes within fusedrnn.testing's tolerance for the dtype, or "
            "within 4x the baseline's error on it.", "",
            *_table(["case", *providers], body), ""]


def _verdict(value: float | None, passes) -> str:
    if value is None:
        return "n/a"
    return f"{'yes' if passes(value) else 'no'} ({value:.2f}x)"


def _bar_section(rows: list[dict], device_type: str, provider: str) -> list[str]:
    cases = {key: by for key, by in _by_case(rows, FORWARD_BACKWARD).items()
             if provider in by and number(by[provider]["median_ms"]) is not None}
    if not cases:
        return []
    body = []
    for by in cases.values():
        row = by[provider]
        speedup = number(row["speedup_vs_cudnn"])
        loop = by.get("cell-loop")
        vs_loop = None
        if loop is not None and number(loop["median_ms"]) is not None:
            vs_loop = float(loop["median_ms"]) / float(row["median_ms"])
        memory = number(row["mem_vs_cudnn"])
        checks = [
            _verdict(speedup, lambda v: v >= BAR_MIN_SPEEDUP),
            _verdict(vs_loop, lambda v: v >= BAR_MIN_VS_LOOP),
            _verdict(memory, lambda v: v <= BAR_MAX_MEMORY),
        ]
        meets = "yes" if all(c.startswith("yes") for c in checks) else ("no" if any(c.startswith("no") for c in checks)
                                                                          else "incomplete")
        body.append([_case_label(row), *checks, meets])
    note = "" if device_type == "cuda" else " This run is not on a GPU, so these figures say nothing about them."
    return [f"## Targets for {provider} (forward+backward)", "",
            f"fusedrnn's performance targets on a GPU: at least {BAR_MIN_SPEEDUP}x the baseline's speed, at least "
            f"{BAR_MIN_VS_LOOP}x the speed of a Python loop over the cell (cell-loop), and at most {BAR_MAX_MEMORY}x "
            f"the baseline's peak memory. A figure, not a test.{note}", "",
            *_table(["case", f">= {BAR_MIN_SPEEDUP}x baseline", f">= {BAR_MIN_VS_LOOP}x cell-loop",
                     f"memory <= {BAR_MAX_MEMORY}x", "meets all"], body), ""]


def _published_section(rows: list[dict]) -> list[str]:
    def matches(row):
        return (row["cell"] == PUBLISHED["cell"] and int(row["batch"]) == PUBLISHED["batch"]
                and int(row["hidden"]) == PUBLISHED["hidden"] and int(row["seq_len"]) == PUBLISHED["seq_len"]
                and int(row["layers"]) == 1 and row["bidirectional"] in (False, "False"))

    ours = [r for r in rows if r["pass"] in (FORWARD, FORWARD_BACKWARD) and matches(r)
            and number(r["median_ms"]) is not None]
    if not ours:
        return []
    lines = ["## Published reference point (not our measurement)", "",
             f"{PUBLISHED['source']}: {PUBLISHED['forward_ms']} ms forward, {PUBLISHED['forward_backward_ms']} ms "
             "forward+backward. Our numbers for that shape in this run:", ""]
    lines += [f"- {r['provider']} {r['dtype']} {r['pass']}: {_ms(r)}" for r in ours]
    return lines + [""]


def _providers_section(rows: list[dict], notes, config: RunConfig) -> list[str]:
    lines = ["## Providers", ""]
    ran = _providers_in(rows)
    for name in ran:
        about = PROVIDERS[name].about if name in PROVIDERS else ""
        lines.append(f"- **{name}**: {about}")
    if config.skipped:
        lines += ["", "Skipped:", ""]
        lines += [f"- {name}: {why}" for name, why in config.skipped.items()]
    if notes.by_provider:
        lines += ["", "Notes:", ""]
        for name, texts in notes.by_provider.items():
            lines += [f"- {name}: {text}" for text in texts]
    return lines + [""]


def markdown(rows: list[dict], notes, config: RunConfig, env: dict, files: list[str]) -> str:
    lines = [f"# fusedrnn benchmark: {env['device']}, {env['date']}", ""]
    lines.append(f"Grid `{config.grid_name}`, suites {', '.join(config.suites)}. torch {env['torch']}, triton "
                 f"{env['triton']}, fusedrnn {env['fusedrnn']}, commit {env['git_commit']}, "
                 f"{config.threads} CPU thread{'s' if config.threads != 1 else ''}.")
    lines.append(f"Times: median of {config.repeats} timed calls after {config.warmup} warm-up calls, [p20, p80], "
                 "rotating over pre-drawn random inputs; forward runs without autograd. A provider's speed is shown "
                 "only if its gradient check passed in this run.")
    if config.device.type == "cuda":
        import torch

        lines.append(f"TF32: cuDNN {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32} "
                     "(torch's defaults unless changed).")
    lines.append("")
    lines += _speed_section(rows, FORWARD_BACKWARD, "Speedup, forward+backward")
    lines += _speed_section(rows, FORWARD, "Speedup, forward")
    lines += _speed_section(rows, STEP_FORWARD_BACKWARD,
                            "Single cell step, forward+backward, against torch.nn.LSTMCell / GRUCell / RNNCell")
    lines += _speed_section(rows, STEP, "Single cell step (forward), against torch.nn.LSTMCell / GRUCell / RNNCell")
    lines += _memory_section(rows, config)
    lines += _grad_section(rows)
    for strategy in FUSED_STRATEGIES:
        lines += _bar_section(rows, config.device.type, f"fusedrnn-{strategy}")
    lines += speed_bar.markdown(rows, env["device"])
    lines += _published_section(rows)
    lines += _providers_section(rows, notes, config)
    if any(INTERPRETER_NOTE in (r["note"] or "") for r in rows):
        lines += [f"{INTERPRETED_MARK.strip()} {INTERPRETER_NOTE}.", ""]
    if files:
        lines += ["Files: " + ", ".join(f"`{f}`" for f in files), ""]
    return "\n".join(lines)
