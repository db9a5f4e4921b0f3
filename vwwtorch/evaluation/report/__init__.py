"""`vwwtorch report`: how a model fails, before it ships (metrics, curves, thresholds, worst errors).

`predictions` runs a checkpoint or a deployed `.tflite` model over a dataset split, `metrics` turns
the class probabilities into every figure of `report.json` (docs/report_json.md), `plots` and
`sheet` draw the PNGs, `cli` ties them together.
"""
