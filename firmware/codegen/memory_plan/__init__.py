"""Less SRAM for a model on the microcontroller, bit-exact: `vwwtorch firmware generate --memory-budget`.

    requantization.py   TFLM's padding and output size (the arithmetic is vwwtorch.contract.int8_arithmetic)
    chain_op.py         convolutions rewritten as VWW_CONV_CHAIN ops (firmware/core/kernels/conv_chain.h)
    liveness.py         tensor lifetimes, live bytes per op, TFLM's greedy plan of the arena
    budget.py           the rewrite that fits a budget, and the arena it needs
    chart.py            live memory per layer, before and after, as a PNG
"""
