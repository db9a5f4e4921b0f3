# Host (x86-64 Linux) build: the same core and TFLM sources, compiled with the system g++.
CXX := g++
CC := gcc
AR := ar
ARCH_FLAGS :=
OPT_CORE := -O2
OPT_KERNELS := -O2
BOARD_SRCS := main.cc platform.cc
BOARD_CORE_SRCS := file_images.cc log_responder.cc
BOARD_LDFLAGS := -Wl,--gc-sections
BOARD_LIBS := -lm
PROGRAM := vww_host
