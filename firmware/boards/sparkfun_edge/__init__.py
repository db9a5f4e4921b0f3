"""The SparkFun Edge's device tooling, beside its C++ port (this folder's board.mk and sources).

    apollo3_image   the OTA image the Apollo3 bootloader takes (header, CRC, blocks)
    apollo3_uart    the bootloader's UART messages
    flasher         the bootloader's wired update over the UART (the protocol, its replies and retries)
    flash_command   `vwwtorch firmware flash`: its arguments, the blobs, then the wired update
    serial_port     opening the board's port, its failures in one line
    monitor         `vwwtorch firmware monitor`: the board's detection log
"""
