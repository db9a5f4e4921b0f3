"""Building and running the firmware on the host: everything between generated sources and scores.

    deps            the pinned TFLM, flatbuffers, gemmlowp, CMSIS(-NN) and vendor SDK trees, cached;
                    install_deps the command, source_trees their digests and extraction, patching
    compiler        drives the Makefile for a board and reads the program's flash/RAM use
    run, images     runs a build natively or under QEMU on images and parses its detection lines
    profile         per-operator instructions and MACs, counted by the QEMU plugin (insn_count)
"""
