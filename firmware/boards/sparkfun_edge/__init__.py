"""The SparkFun Edge's device tooling, beside its C++ port (this folder's board.mk and sources).

    apollo3_image   the OTA image the Apollo3 bootloader takes (header, CRC, blocks)
    apollo3_uart    the bootloader's UART messages
    flasher         `vwwtorch firmware flash`: the wired update over the UART
    monitor         `vwwtorch firmware monitor`: the board's detection log
"""
