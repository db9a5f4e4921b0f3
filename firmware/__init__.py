"""Firmware tooling: Apollo3 image blobs, the UART bootloader flasher and the serial monitor."""
