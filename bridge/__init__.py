"""torch -> ONNX -> TFLite int8 bridge with parity gates.

    onnx_export     checkpoint model -> model.onnx (softmax last, static shape, checked)
    convert         onnx2tf -> Keras NHWC -> TFLite float32 / full-integer int8
    depthwise       one-input-channel convs (the grayscale first layer) as depthwise convs
    calibration     dataset images through the training eval preprocessing
    slim            drop tensor names and RESHAPE's shape tensor (flash, arena)
    tflite_inspect  op histogram and quantization read from the flatbuffer
    quant_checks    static gates: input/output quantization, op set, per-channel weights
    tflite_runner   run a .tflite with ai_edge_litert (`run_tflite`)
    tflm_runner     run an int8 .tflite with TFLite Micro, measure its arena
    float_runners   torch and ONNX Runtime references
    isolated        interpreters in child processes (crash-safe, in parallel)
    parity          the seams and their verdicts
    report          parity.json / parity.md / console table
    pipeline        `vwwtorch export` and `vwwtorch parity`, atomic output folder
"""
