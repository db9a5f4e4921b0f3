# SparkFun Edge (Ambiq Apollo3 Blue, Cortex-M4F): HM01B0 camera in, LEDs and COM UART out.
#
# Uses the Ambiq SDK's Apollo3 HAL and SparkFun's Edge BSP and HM01B0 driver from the dependency
# cache (`vwwtorch firmware deps --board sparkfun_edge`); they are compiled with our flags into
# $(TFLM_BUILD)/libambiq.a, next to the shared TFLM objects. Outputs in $(OUT):
#   vww_sparkfun_edge.axf   the linked program (ELF, under the name Ambiq's tools use)
#   vww_sparkfun_edge.bin   raw image for 0xC000, what `vwwtorch firmware flash --build` sends
#   vww_sparkfun_edge.map   linker map

CXX := arm-none-eabi-g++
CC := arm-none-eabi-gcc
AR := arm-none-eabi-ar
OBJCOPY := arm-none-eabi-objcopy
ARCH_FLAGS := -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
OPT_CORE := -Os
OPT_KERNELS := -O2
OPT_AMBIQ := -Os

BOARD_SRCS := startup.cc platform.cc main.cc hm01b0_camera.cc frame_reduce.cc image_provider.cc \
              detection_responder.cc
BOARD_CORE_SRCS := tiny_format.cc
BOARD_CORTEX_M_SRCS := cortex_m_runtime.cc
PROGRAM := vww_sparkfun_edge.axf
EDGE_OUT := $(OUT)/vww_sparkfun_edge

AMBIQ_SDK := $(DEPS)/ambiq-sdk
SFE_BSP := $(DEPS)/sparkfun-bsp
ifneq ($(words $(wildcard $(AMBIQ_SDK)/mcu/apollo3/am_mcu_apollo.h $(SFE_BSP)/edge/bsp/am_bsp.h)),2)
  $(error the Ambiq SDK or the SparkFun BSP is missing from $(DEPS); \
    run `vwwtorch firmware deps --board sparkfun_edge`)
endif

# Apollo3 Blue in the BGA package, as on the Edge. The SDK's own CMSIS 5 core headers come first:
# its HAL uses names that CMSIS 6 renamed.
AMBIQ_DEFINES := -DAM_PART_APOLLO3 -DAM_PACKAGE_BGA -DPART_apollo3
AMBIQ_INCLUDES := -isystem $(AMBIQ_SDK)/CMSIS/ARM/Include \
                  -isystem $(AMBIQ_SDK)/CMSIS/AmbiqMicro/Include \
                  -isystem $(AMBIQ_SDK)/mcu/apollo3 -isystem $(AMBIQ_SDK)/utils \
                  -isystem $(AMBIQ_SDK)/devices -isystem $(SFE_BSP)/edge/bsp \
                  -isystem $(SFE_BSP)/common/third_party/hm01b0

# Vendor sources, relative to $(DEPS). The whole HAL is compiled; --gc-sections keeps what is used.
AMBIQ_SRCS := $(patsubst $(DEPS)/%,%,$(sort $(wildcard $(AMBIQ_SDK)/mcu/apollo3/hal/*.c))) \
              ambiq-sdk/utils/am_util_delay.c ambiq-sdk/utils/am_util_stdio.c \
              ambiq-sdk/devices/am_devices_led.c ambiq-sdk/devices/am_devices_button.c \
              sparkfun-bsp/edge/bsp/am_bsp.c sparkfun-bsp/edge/bsp/am_bsp_pins.c \
              sparkfun-bsp/common/third_party/hm01b0/HM01B0.c
AMBIQ_OBJS := $(addprefix $(TFLM_BUILD)/ambiq/,$(AMBIQ_SRCS:.c=.o))
AMBIQ_LIB := $(TFLM_BUILD)/libambiq.a

BOARD_LDFLAGS := -T $(BOARD_DIR)/apollo3.ld -nostartfiles --specs=nano.specs -Wl,--gc-sections \
  -Wl,--defsym=STACK_SIZE=$(STACK_SIZE) -Wl,-Map=$(EDGE_OUT).map
BOARD_LIBS := $(AMBIQ_LIB) -lm
BOARD_LINK_DEPS := $(BOARD_DIR)/apollo3.ld $(AMBIQ_LIB)

# Our board sources include the vendor headers (the Makefile adds these to board objects only).
BOARD_DEFINES := $(AMBIQ_DEFINES)
BOARD_INCLUDES := $(AMBIQ_INCLUDES)

# The first rule in the makefile is the default goal: the Makefile adds the program to `all`.
all: $(EDGE_OUT).bin

$(EDGE_OUT).bin: $(OUT)/$(PROGRAM)
	$(OBJCOPY) -O binary $< $@.tmp
	mv -f $@.tmp $@

$(AMBIQ_LIB): $(AMBIQ_OBJS)
	rm -f $@.tmp && $(AR) rcs $@.tmp $^ && mv -f $@.tmp $@

# Vendor code: its warnings are its own, so no -Werror. Rebuilt when these flags change.
$(TFLM_BUILD)/ambiq/%.o: $(DEPS)/%.c $(BOARD_DIR)/board.mk
	@mkdir -p $(dir $@)
	$(CC) $(C_FLAGS) $(OPT_AMBIQ) $(AMBIQ_DEFINES) $(AMBIQ_INCLUDES) $(DEPFLAGS) -c $< -o $@
