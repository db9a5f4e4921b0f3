"""Live tensor-arena bytes per layer, before and after the memory plan, as a PNG."""

from __future__ import annotations

from pathlib import Path


def layer_rows(memory) -> list[dict]:
    """One row per op of the unchanged model: its live bytes before, and after (the op that replaced
    it: a streamed chain counts once for each of its layers)."""
    before, after = memory.before, memory.chosen.plan
    live_before, live_after = before.live_bytes(), after.live_bytes()
    streamed = memory.chosen.streamed
    rows = []
    for i, op in enumerate(before.ops):
        j = 0 if streamed >= 2 and i < streamed else (i - streamed + 1 if streamed >= 2 else i)
        rows.append({"index": i, "op": op, "live_before": live_before[i], "live_after": live_after[j],
                     "after_op": after.labels[j]})
    return rows


def save_chart(memory, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = layer_rows(memory)
    x = [r["index"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.bar([i - 0.2 for i in x], [r["live_before"] / 1024 for r in rows], width=0.4, color="0.6",
           label=f"TFLM as converted (arena {memory.arena_before / 1024:.1f} KiB)")
    ax.bar([i + 0.2 for i in x], [r["live_after"] / 1024 for r in rows], width=0.4, color="tab:blue",
           label=f"memory plan, first {memory.chosen.streamed} layers row by row "
                 f"(arena {memory.chosen.arena_estimate / 1024:.1f} KiB)")
    if memory.budget is not None:
        ax.axhline(memory.budget / 1024, color="tab:red", linestyle="--", linewidth=1,
                   label=f"budget {memory.budget / 1024:.0f} KiB (whole arena)")
    ax.set_xlabel("layer (op of the converted model)")
    ax.set_ylabel("live activations + scratch (KiB)")
    ax.set_title("Tensor arena: bytes live while each layer runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
