"""CPU training throughput: our training step vs the same model in Keras, in one run.

Both sides train MobileNetV1 alpha 0.25 on 96x96x1 inputs, 2 classes, batch 96, RMSProp and label
smoothing 0.1, on random data (the step, not the input pipeline, is measured). Ours also updates
the weight EMA, as a real `vwwtorch fit` step does.

    python benchmarks/train_throughput.py [--batch 96] [--steps 20] [--threads N]
"""

import argparse
import os
import time


def bench_torch(batch: int, steps: int, warmup: int) -> float:
    import torch
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel

    from vwwtorch.training.ema import tf_ema_multi_avg_fn
    from vwwtorch.training.module import VWWClassifier
    from vwwtorch.training.rmsprop_tf import RMSpropTF

    model = VWWClassifier().model.train()
    opt = RMSpropTF(model.parameters(), lr=0.045, weight_decay=4e-5)
    ema = AveragedModel(model, multi_avg_fn=tf_ema_multi_avg_fn(0.9999), use_buffers=True)
    x = torch.randn(batch, 1, 96, 96).contiguous(memory_format=torch.channels_last)  # as VWWClassifier.forward
    y = torch.randint(0, 2, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update_parameters(model)
    return batch * steps / (time.perf_counter() - start)


def bench_keras(batch: int, steps: int, warmup: int) -> float:
    import numpy as np
    import tensorflow as tf

    model = tf.keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 1), weights=None, classes=2)
    model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=0.045, rho=0.9, momentum=0.9, epsilon=1.0),
                  loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    x = np.random.randn(batch, 96, 96, 1).astype("float32")
    y = tf.keras.utils.to_categorical(np.random.randint(0, 2, batch), 2)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch
    import vwwtorch.training.module  # noqa: F401  torchvision must load before TensorFlow (LLVM option clash)
    import tensorflow as tf

    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    ours = bench_torch(args.batch, args.steps, args.warmup)
    keras = bench_keras(args.batch, args.steps, args.warmup)
    print(f"CPU training step, MobileNetV1 0.25 96x96x1, batch {args.batch}, {args.threads} threads")
    print(f"{'implementation':<34} {'images/s':>10}")
    print(f"{'vwwtorch (torch ' + torch.__version__.split('+')[0] + ')':<34} {ours:>10.1f}")
    print(f"{'Keras MobileNet (tf ' + tf.__version__ + ')':<34} {keras:>10.1f}")
    print(f"{'ratio vwwtorch / Keras':<34} {ours / keras:>10.2f}")


if __name__ == "__main__":
    main()
