"""A training callback for tests: records the sample indices the training loader serves on each
rank, to `$VWWTORCH_TEST_SAMPLES/rank<r>.json` when training ends. The batch's images arrive
augmented, so the indices are read where the loader asks its dataset for a batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pytorch_lightning.callbacks import Callback


class RecordServedSamples(Callback):
    def __init__(self):
        self.served: list[int] = []

    def on_train_start(self, trainer, pl_module):
        dataset = trainer.train_dataloader.dataset
        served = self.served

        class Recording(type(dataset)):
            def __getitem__(self, key):
                served.extend(int(i) for i in key.indices)
                return super().__getitem__(key)

        dataset.__class__ = Recording  # the loader holds this object: record what it reads

    def on_train_end(self, trainer, pl_module):
        out = Path(os.environ["VWWTORCH_TEST_SAMPLES"]) / f"rank{trainer.global_rank}.json"
        out.write_text(json.dumps(self.served))
