"""A Lightning callback that prints steady-state training images per second (for fit_throughput.py).

Loaded into the real `vwwtorch fit` through the CLI (`--trainer.callbacks+=throughput_meter.ThroughputMeter`
with this folder on PYTHONPATH); the first `warmup` batches are left out.
"""

from __future__ import annotations

import json
import time

import pytorch_lightning as pl


class ThroughputMeter(pl.Callback):
    def __init__(self, warmup: int = 10):
        self.warmup = warmup
        self.ends: list[float] = []
        self.images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())
        if len(self.ends) > self.warmup + 1:
            self.images += len(batch[1])

    def on_train_end(self, trainer, pl_module) -> None:
        start, end = self.ends[self.warmup], self.ends[-1]
        print("THROUGHPUT " + json.dumps({"images": self.images, "seconds": end - start,
                                          "images_per_second": self.images / (end - start),
                                          "batches": len(self.ends)}), flush=True)
