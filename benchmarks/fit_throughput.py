"""End-to-end training throughput: `vwwtorch fit` with the book's augmentation against Keras
`model.fit` on a tf.data pipeline doing the same augmentation, same data, same machine, one run.

    python benchmarks/fit_throughput.py [--train 3000] [--epochs 3] [--workers N] [--threads 2]

Data: the built-in synthetic set (128x128 grayscale, `vwwtorch data synthetic`), cropped and resized
to 96x96 at train time. Ours: the real CLI with configs/vww_96_grayscale.yaml (slim's inception
augmentation applied a batch at a time on the training device, the book's recipe, EMA), with the
data module's default loader processes unless `--workers` is given; a callback
(benchmarks/throughput_meter.py) counts images per second after the first 10 batches.
Keras: tf.keras MobileNet alpha 0.25 (96x96x1, 2 classes, RMSProp, label smoothing 0.1), tf.data
from the same uint8 arrays with the same distortions (sample_distorted_bounding_box with area
[0.05, 1] and aspect [3/4, 4/3], resize, flip, brightness +-0.125, contrast [0.5, 1.5]),
`num_parallel_calls=AUTOTUNE`, batch 96, prefetch; timed the same way. Also prints our bare
training step (benchmarks/train_throughput.py's) for the "within 15% of the bare step" question.
The last line is the ratio ours / Keras.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BATCH = 96


def ours(data: Path, epochs: int, workers: int | None, threads: int, logs: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "vwwtorch", "fit", "--config", str(REPO / "configs" / "vww_96_grayscale.yaml"),
               "--data.data_dir", str(data), "--trainer.max_epochs", str(epochs),
               "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
               "--trainer.callbacks+=throughput_meter.ThroughputMeter", "--trainer.default_root_dir", str(logs)]
    if workers is not None:
        command += ["--data.num_workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=logs)
    if done.returncode != 0:
        raise SystemExit(f"vwwtorch fit failed:\n{done.stderr[-3000:]}")
    line = next(l for l in done.stdout.splitlines() if l.startswith("THROUGHPUT "))
    return json.loads(line.split(" ", 1)[1])


def keras(data: Path, epochs: int, threads: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    images = np.load(data / "train" / "images.npy")
    labels = np.load(data / "train" / "labels.npy")

    def augment(image, label):
        box_begin, box_size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), min_object_covered=0.0,
            aspect_ratio_range=(0.75, 4 / 3), area_range=(0.05, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        image = tf.slice(image, box_begin, box_size)
        image = tf.image.resize(tf.cast(image, tf.float32), (96, 96))
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_brightness(image, 0.125 * 255)
        image = tf.image.random_contrast(image, 0.5, 1.5)
        return tf.clip_by_value(image, 0, 255) / 127.5 - 1, tf.one_hot(label, 2)

    dataset = (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(labels))
               .map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH, drop_remainder=True)
               .prefetch(tf.data.AUTOTUNE))
    model = tf.keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 1), weights=None, classes=2)
    model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=0.045, rho=0.9, momentum=0.9, epsilon=1.0),
                  loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=0.1))

    class Meter(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    meter = Meter()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[meter])
    warmup = 10
    count = (len(meter.ends) - warmup - 1) * BATCH
    seconds = meter.ends[-1] - meter.ends[warmup]
    return {"images": count, "seconds": seconds, "images_per_second": count / seconds, "batches": len(meter.ends)}


def bare_step(threads: int) -> float:
    """Our bare training step, from benchmarks/train_throughput.py in its own process (it loads torch
    before TensorFlow, which this process has loaded already)."""
    done = subprocess.run([sys.executable, str(HERE / "train_throughput.py"), "--threads", str(threads)],
                          capture_output=True, text=True, check=True)
    line = next(l for l in done.stdout.splitlines() if l.startswith("vwwtorch ("))
    return float(line.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=3000, help="training images (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="our DataLoader processes (default: the data module's, none on a CPU)")
    parser.add_argument("--threads", type=int, default=2, help="compute threads for both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vww-fit-") as scratch:
        data = Path(scratch) / "data"
        subprocess.run([sys.executable, "-m", "vwwtorch", "data", "synthetic", "--out", str(data), "--train",
                        str(args.train), "--val", "96", "--test", "0"], check=True, capture_output=True)
        logs = Path(scratch) / "logs"
        logs.mkdir()
        a = ours(data, args.epochs, args.workers, args.threads, logs)
        b = keras(data, args.epochs, args.threads)
    step = bare_step(args.threads)
    print(f"{os.cpu_count()} CPUs, {args.threads} compute threads, {args.train} images x {args.epochs} epochs, "
          f"batch {BATCH}, steady state after 10 batches")
    print("| pipeline | img/s | images timed | seconds |")
    print("|---|---:|---:|---:|")
    workers = "default" if args.workers is None else args.workers
    print(f"| vwwtorch fit (batched augmentation, {workers} workers) | {a['images_per_second']:.0f} "
          f"| {a['images']} | {a['seconds']:.1f} |")
    print(f"| Keras model.fit (tf.data augmentation) | {b['images_per_second']:.0f} | {b['images']} "
          f"| {b['seconds']:.1f} |")
    print(f"| our bare training step (benchmarks/train_throughput.py) | {step:.0f} | | |")
    print(f"ours / Keras end to end: {a['images_per_second'] / b['images_per_second']:.2f}x; "
          f"ours end to end / our bare step: {a['images_per_second'] / step:.2f}")


if __name__ == "__main__":
    main()
