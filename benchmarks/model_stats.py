"""Parameters, MACs and peak activation memory of MobileNetV1 for a grid of widths and resolutions.

    python benchmarks/model_stats.py [--channels 1]
"""

import argparse

from vwwtorch.models.mobilenet_v1 import MobileNetV1
from vwwtorch.models.stats import model_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[96, 128, 160, 224])
    args = parser.parse_args()
    print(f"MobileNetV1, {args.channels} input channel(s), 2 classes")
    print(f"{'width':>6} {'res':>5} {'params':>10} {'MACs (M)':>10} {'peak act. int8 (KB)':>20}")
    for width in args.widths:
        for res in args.resolutions:
            s = model_stats(MobileNetV1(width=width, in_channels=args.channels, resolution=res), (args.channels, res, res))
            print(f"{width:>6.2f} {res:>5d} {s.params:>10,d} {s.macs / 1e6:>10.2f} {s.peak_activation_bytes / 1024:>20.1f}")


if __name__ == "__main__":
    main()
