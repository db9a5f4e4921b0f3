"""The firmware stage (installed as `vwwtorch.firmware`): the C++ application and its Python tooling.

C++, compiled by Makefile/tflm.mk with TFLM from the cache:
    core/            the portable app: setup/loop, image files, the detection log line
    boards/<name>/   one port per board (board.mk, startup, platform); tools/ the QEMU counter plugin
Python:
    boards           the board registry: a board is an entry here plus its port folder
    generate         an int8 .tflite -> the model's C++ sources (array, settings, op resolver, byte table)
    deps             the pinned TFLM, flatbuffers, gemmlowp, CMSIS(-NN) and vendor SDK trees, cached
    build, run       compile for a board; run natively or emulated and parse the detection lines
    flasher, monitor the SparkFun Edge: UART bootloader flashing (apollo3_image, apollo3_uart) and its log
    pipeline         the quickstart's firmware stage
"""
