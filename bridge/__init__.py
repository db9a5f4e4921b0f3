"""The export stage: a checkpoint to a verified int8 `.tflite` (installed as `vwwtorch.bridge`).

    cli             `vwwtorch export` and `vwwtorch parity`
    export_run      `export` and `parity` runs: the stages in order, timed, the report, atomic output
    export_stages   the stages (ONNX, images, conversion, int8, parity), typed values in and out
    onnx_export     checkpoint model -> model.onnx (softmax last, static shape, checked)
    convert         onnx2tf -> Keras NHWC -> TFLite float32 / full-integer int8
    passes/         graph passes, one per module (one-channel conv as depthwise, RESHAPE shape
                    folding, tensor names)
    calibration     dataset images through the deployment rule, for calibration and parity
    gates/          the gates, one per module: static checks of the file and runtime seams
    parity          runs the gates in order
    float_runners   torch and ONNX Runtime references
    isolated        interpreters in child processes (crash-safe, in parallel)
    report          parity.json / parity.md / console table

The `.tflite` reader, the LiteRT and TFLM runners and the deployment rule are the contract's
(`vwwtorch.contract`), shared with evaluation and firmware.
"""
