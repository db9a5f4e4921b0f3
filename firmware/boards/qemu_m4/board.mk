# Emulated Cortex-M4F (qemu-system-arm -machine mps2-an386): bare metal, newlib-nano, semihosting.
CXX := arm-none-eabi-g++
CC := arm-none-eabi-gcc
AR := arm-none-eabi-ar
ARCH_FLAGS := -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
OPT_CORE := -Os
OPT_KERNELS := -O2
BOARD_SRCS := startup.cc semihosting.cc platform.cc main.cc
BOARD_CORE_SRCS := file_images.cc log_responder.cc tiny_format.cc
BOARD_CORTEX_M_SRCS := cortex_m_runtime.cc
BOARD_LDFLAGS := -T $(BOARD_DIR)/mps2_an386.ld -nostartfiles --specs=nano.specs \
  -Wl,--gc-sections -Wl,--defsym=STACK_SIZE=$(STACK_SIZE) -Wl,-Map=$(OUT)/vww_qemu_m4.map
BOARD_LIBS := -lm
BOARD_LINK_DEPS := $(BOARD_DIR)/mps2_an386.ld
PROGRAM := vww_qemu_m4.elf
