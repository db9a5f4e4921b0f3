"""The chain rewrite that fits a memory budget, and the arena the firmware then needs.

Candidates, from least to most rewriting: every convolution a one-layer chain (requantization
tables in flash), then the first 2, 3, ... layers run row by row as one chain. Streaming more
layers is not always smaller (the chain's windows and its input stay alive while it runs), so each
candidate's arena is estimated and the first that fits the budget wins: the fewest layers streamed
means the fewest kernel calls.

The estimate starts from the TFLM runtime's measurement of the unchanged model and moves by what
the rewrite changes: the planned head (liveness.py, TFLM's greedy planner) and the 8 bytes per
output channel of the requantization tables that leave the arena, plus 32 bytes per chain op for
its own data. The runtime is a 64-bit build, so on a Cortex-M the estimate runs a little high.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.tflite import operator_names, unpack
from vwwtorch.firmware.codegen.arena import arena_with_margin
from vwwtorch.firmware.codegen.memory_plan.chain_op import CHAIN_OP_NAME, chain_layers, rewrite, streamable_prefix
from vwwtorch.firmware.codegen.memory_plan.liveness import ArenaPlan, plan_of

TABLE_BYTES_PER_CHANNEL = 8  # an int32 multiplier and an int32 shift
CHAIN_OP_DATA = 32           # conv_chain.cc's OpData, rounded up


@dataclass
class Candidate:
    streamed: int          # layers run row by row as one chain (0: none)
    data: bytes
    plan: ArenaPlan
    arena_estimate: int

    @property
    def arena_size(self) -> int:
        return arena_with_margin(self.arena_estimate)


@dataclass
class MemoryPlan:
    budget: int | None
    arena_before: int          # the unchanged model, measured by the TFLM runtime
    before: ArenaPlan
    chosen: Candidate
    candidates: list[Candidate] = field(default_factory=list)

    def summary(self) -> dict:
        return {"budget": self.budget, "arena_before": self.arena_before,
                "arena_before_with_margin": arena_with_margin(self.arena_before),
                "streamed_layers": self.chosen.streamed, "arena_estimate": self.chosen.arena_estimate,
                "head_before": self.before.greedy_size, "head_after": self.chosen.plan.greedy_size,
                "lower_bound_after": self.chosen.plan.lower_bound,
                "candidates": [{"streamed_layers": c.streamed, "arena_estimate": c.arena_estimate,
                                "arena_size": c.arena_size} for c in self.candidates]}


def _moved_table_bytes_and_ops(data: bytes) -> tuple[int, int]:
    model = unpack(data)
    names = operator_names(model)
    chains = [op for op in model.subgraphs[0].operators if names[op.opcodeIndex] == CHAIN_OP_NAME]
    channels = sum(layer.out_c for op in chains for layer, _ in chain_layers(op))
    return channels * TABLE_BYTES_PER_CHANNEL, len(chains)


def estimate_arena(measured_before: int, before: ArenaPlan, data: bytes) -> tuple[ArenaPlan, int]:
    plan = plan_of(data)
    tables, chains = _moved_table_bytes_and_ops(data)
    return plan, measured_before - before.greedy_size + plan.greedy_size - tables + chains * CHAIN_OP_DATA


def plan_for_budget(data: bytes, budget: int | None, source: str = "the model",
                    streamed: int | None = None) -> MemoryPlan:
    """The least rewrite whose arena (with the usual margin) fits `budget` bytes, or a UserError;
    `streamed`: that many leading layers row by row, whatever the arena (checked against a budget
    when one is given too)."""
    from vwwtorch.contract.tflm import measure_arena

    prefix = streamable_prefix(data)
    if streamed is not None and not (streamed == 0 or 2 <= streamed <= prefix):
        raise UserError(f"--stream-layers {streamed}: {source} can stream 0 or 2..{prefix} leading layers"
                        if prefix >= 2 else f"--stream-layers {streamed}: {source} can stream none (0)")
    measured = measure_arena(data)
    before = plan_of(data)
    candidates = []
    for count in [streamed] if streamed is not None else [0, *range(2, prefix + 1)]:
        rewritten = rewrite(data, count)
        plan, estimate = estimate_arena(measured, before, rewritten)
        candidates.append(Candidate(count, rewritten, plan, estimate))
        if budget is None or candidates[-1].arena_size <= budget:
            return MemoryPlan(budget, measured, before, candidates[-1], candidates)
    best = min(candidates, key=lambda c: c.arena_size)
    raise UserError(f"no plan fits {source} in a {budget:,} B arena: the smallest is {best.arena_size:,} B "
                    f"(the first {best.streamed} layers row by row); raise --memory-budget")
