"""The firmware stage (installed as `vwwtorch.firmware`): the C++ application and its Python tooling.

C++, compiled by Makefile/tflm.mk with TFLM from the cache:
    core/              the portable app: setup/loop, image files, the detection log line
    core/kernels/      vwwtorch's Cortex-M4 kernels (packed convolutions, the chained-convolution op)
    boards/<name>/     one port per board (board.mk, platform, main); boards/cortex_m/ the startup
                       code the bare-metal ports share; tools/ the QEMU instruction-counter plugin
Python, one sub-package per job:
    codegen/           an int8 .tflite -> the model's C++ sources (array, settings, op resolver,
                       packed weights, memory plans)
    toolchain/         the pinned dependency trees, compiling for a board, running and profiling builds
    boards/            the board registry (boards/__init__.py: a board is an entry there plus its
                       port folder); boards/sparkfun_edge/ also holds that board's device tooling
                       (UART bootloader flashing, the log monitor)
    cli/               the `vwwtorch firmware ...` commands
    quickstart_stage   the quickstart's firmware stage
"""
