"""Where a model's tensor arena goes: tensor lifetimes, the bytes live while each op runs, and the
offsets TFLM's greedy planner gives them.

TFLM plans every tensor that is not a constant (and every scratch buffer a kernel asks for) into
the head of the arena: a buffer lives from the op that writes it to the last op that reads it (the
model's inputs from the first op, its outputs to the end), sizes rounded up to 16 bytes. The
GreedyMemoryPlanner places the biggest first, each at the lowest offset where it overlaps no
placed buffer that is alive at the same time. `greedy_plan` does the same; `lower_bound` is what
no plan can beat (the most bytes alive at once), so when greedy reaches it an offline plan (TFLM's
OfflineMemoryAllocation metadata) cannot do better.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from vwwtorch.contract.tflite import NUMPY_TYPES, operator_names, unpack

ALIGN = 16  # MicroArenaBufferAlignment()


@dataclass
class Buffer:
    name: str
    size: int       # bytes, rounded up to ALIGN
    first: int      # op index
    last: int
    offset: int = -1


@dataclass
class ArenaPlan:
    ops: list[str]                          # op names, in order
    labels: list[str]                       # a short description of each op
    buffers: list[Buffer] = field(default_factory=list)

    def live_bytes(self) -> list[int]:
        """Bytes alive while each op runs."""
        return [sum(b.size for b in self.buffers if b.first <= i <= b.last) for i in range(len(self.ops))]

    @property
    def lower_bound(self) -> int:
        return max(self.live_bytes(), default=0)

    @property
    def greedy_size(self) -> int:
        greedy_plan(self.buffers)
        return max((b.offset + b.size for b in self.buffers), default=0)


def _aligned(size: int) -> int:
    return (size + ALIGN - 1) // ALIGN * ALIGN


def greedy_plan(buffers: list[Buffer]) -> None:
    """Sets each buffer's offset as TFLM's GreedyMemoryPlanner does."""
    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: -b.size):  # stable: ties keep graph order
        offset = 0
        for other in sorted((p for p in placed if p.first <= b.last and b.first <= p.last),
                            key=lambda p: p.offset):
            if offset + b.size <= other.offset:
                break
            offset = max(offset, other.offset + other.size)
        b.offset = offset
        placed.append(b)


def plan_of(data: bytes) -> ArenaPlan:
    """The arena buffers of a model: its non-constant tensors, and the scratch of its chain ops
    (stock kernels' scratch is left out: the reference kernels TFLM's runtime measures with ask
    for none)."""
    from vwwtorch.firmware.codegen.memory_plan.chain_op import CHAIN_OP_NAME, chain_layers, chain_scratch

    model = unpack(data)
    graph = model.subgraphs[0]
    names = operator_names(model)
    ops = [names[op.opcodeIndex] for op in graph.operators]
    labels = []
    for op, name in zip(graph.operators, ops):
        if name == CHAIN_OP_NAME:
            layers = chain_layers(op)
            labels.append(f"chain of {len(layers)}" if len(layers) > 1 else
                          ("DEPTHWISE_CONV_2D" if layers[0][0].depthwise else "CONV_2D") + " (flash tables)")
        else:
            labels.append(name)
    plan = ArenaPlan(ops, labels)
    scratch = {k: chain_scratch(op) for k, (op, name) in enumerate(zip(graph.operators, ops))
               if name == CHAIN_OP_NAME}
    end = len(ops) - 1
    first: dict[int, int] = {int(i): 0 for i in graph.inputs}
    last: dict[int, int] = {int(i): end for i in graph.outputs}
    for k, op in enumerate(graph.operators):
        for i in op.outputs:
            first.setdefault(int(i), k)
        for i in op.inputs if op.inputs is not None else []:
            if int(i) >= 0:
                last[int(i)] = max(last.get(int(i), k), k)
    for index, tensor in enumerate(graph.tensors):
        buffer = model.buffers[tensor.buffer] if tensor.buffer else None
        if buffer is not None and buffer.data is not None and len(buffer.data):
            continue  # a constant: it stays in flash
        if index not in first or index not in last:
            continue
        count = 1
        for d in tensor.shape if tensor.shape is not None else []:
            count *= int(d)
        itemsize = _type_sizes().get(tensor.type, 1)
        plan.buffers.append(Buffer(f"tensor {index}", _aligned(count * itemsize), first[index], last[index]))
    for k, size in scratch.items():
        if size > 0:
            plan.buffers.append(Buffer(f"scratch of op {k}", _aligned(size), k, k))
    return plan


@functools.cache
def _type_sizes() -> dict[int, int]:
    from vwwtorch.contract.tflite import schema

    types = schema().TensorType
    return {getattr(types, name): int(code[-1]) for name, code in NUMPY_TYPES.items()}

