"""From an int8 .tflite to the model's C++ sources (`vwwtorch firmware generate`).

    generate        the command: model array, settings, op resolver, byte table, model.mk
    ops             the operators the firmware supports and the TFLM kernel sources each needs
    arena           the tensor arena's safety margin
    packed_weights  convolution weights and constants laid out for core/kernels/fast_kernels.cc
    memory_plan/    `--memory-budget`: chained convolutions that keep the arena under a budget
"""
