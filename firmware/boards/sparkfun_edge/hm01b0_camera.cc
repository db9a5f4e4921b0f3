#include "hm01b0_camera.h"

#include "am_bsp.h"
#include "am_mcu_apollo.h"
#include "edge_board.h"

// SparkFun's driver, its pin map for the Edge and Himax's register script (from the BSP in the
// dependency cache; the script header defines the table, so it is included here only).
#include "HM01B0.h"
#include "HM01B0_RAW8_QVGA_8bits_lsb_5fps.h"
#include "platform.h"

namespace edge {
namespace {

constexpr uint16_t kModelId = 0x01B0;  // registers 0x0000 (high byte) and 0x0001

// At 5 frames per second a frame starts every 200 ms; allow for one in progress plus margin.
constexpr uint32_t kFrameStartTimeoutTicks = kTimerHz;         // 1 s
constexpr uint32_t kLineTimeoutTicks = kTimerHz / 100;         // 10 ms; a line lasts ~60 us
// Polls of the pixel clock allowed per line before giving up (a line is 324 pixels; a few
// microseconds per poll at most, so this is far beyond any real line).
constexpr uint32_t kPixelPollsPerLine = 200000;

static_assert(HM01B0_PIXEL_X_NUM == kFrameWidth && HM01B0_PIXEL_Y_NUM == kFrameHeight,
              "the BSP's HM01B0 frame size changed");
static_assert(HM01B0_PIN_VSYNC < 32 && HM01B0_PIN_HSYNC < 32 && HM01B0_PIN_PCLK < 32,
              "the strobes must be in the first GPIO input register");

hm01b0_cfg_t camera;
bool interface_open = false;

void Configure() {
  camera = hm01b0_cfg_t();
  camera.ui16SlvAddr = HM01B0_DEFAULT_ADDRESS;
  camera.eIOMMode = HM01B0_IOM_MODE;
  camera.ui32IOMModule = HM01B0_IOM_MODULE;
  camera.sIOMCfg.eInterfaceMode = HM01B0_IOM_MODE;
  camera.sIOMCfg.ui32ClockFreq = HM01B0_I2C_CLOCK_FREQ;
  camera.ui32CTimerModule = HM01B0_MCLK_GENERATOR_MOD;
  camera.ui32CTimerSegment = HM01B0_MCLK_GENERATOR_SEG;
  camera.ui32CTimerOutputPin = HM01B0_PIN_MCLK;
  camera.ui8PinSCL = HM01B0_PIN_SCL;
  camera.ui8PinSDA = HM01B0_PIN_SDA;
  camera.ui8PinD0 = HM01B0_PIN_D0;
  camera.ui8PinD1 = HM01B0_PIN_D1;
  camera.ui8PinD2 = HM01B0_PIN_D2;
  camera.ui8PinD3 = HM01B0_PIN_D3;
  camera.ui8PinD4 = HM01B0_PIN_D4;
  camera.ui8PinD5 = HM01B0_PIN_D5;
  camera.ui8PinD6 = HM01B0_PIN_D6;
  camera.ui8PinD7 = HM01B0_PIN_D7;
  camera.ui8PinVSYNC = HM01B0_PIN_VSYNC;
  camera.ui8PinHSYNC = HM01B0_PIN_HSYNC;
  camera.ui8PinPCLK = HM01B0_PIN_PCLK;
  camera.ui8PinTrig = HM01B0_PIN_TRIG;
  camera.ui8PinInt = HM01B0_PIN_INT;
}

inline bool Vsync() { return (GPIO->RDA & (1u << HM01B0_PIN_VSYNC)) != 0; }
inline bool Hsync() { return (GPIO->RDA & (1u << HM01B0_PIN_HSYNC)) != 0; }
inline bool Pclk() { return (GPIO->RDA & (1u << HM01B0_PIN_PCLK)) != 0; }
// D0..D7 sit on pads whose number modulo 8 is their bit, so the fast-GPIO input byte is the pixel.
inline uint8_t DataByte() { return static_cast<uint8_t>(APBDMA->BBINPUT); }

// Waits until the strobe reads `level`; false when `timeout` ticks pass first.
bool WaitFor(bool (*strobe)(), bool level, uint32_t timeout) {
  const uint32_t start = TimerTicks();
  while (strobe() != level) {
    if (TimerTicks() - start > timeout) return false;
  }
  return true;
}

// One line: kFrameWidth bytes, one per rising edge of the (gated) pixel clock. The loop is kept
// to a test, a load and a store per pixel: at 96 MHz there are ~16 cycles per 6 MHz pixel.
bool ReadLine(uint8_t* line) {
  uint32_t polls = kPixelPollsPerLine;
  for (uint8_t* const end = line + kFrameWidth; line != end; ++line) {
    while (!Pclk()) {
      if (--polls == 0) return false;
    }
    *line = DataByte();
    while (Pclk()) {
      if (--polls == 0) return false;
    }
  }
  return true;
}

}  // namespace

const char* DescribeCameraStatus(CameraStatus status) {
  switch (status) {
    case CameraStatus::kOk:
      return "ok";
    case CameraStatus::kBusError:
      return "no answer on the camera's I2C bus (is the HM01B0 module seated?)";
    case CameraStatus::kNotFound:
      return "the device on the camera bus is not an HM01B0";
    case CameraStatus::kNoFrame:
      return "no frame from the camera within 1 s";
    case CameraStatus::kBrokenFrame:
      return "a frame line was cut short";
  }
  return "unknown camera error";
}

CameraStatus StartCamera() {
  if (interface_open) {
    hm01b0_deinit_if(&camera);  // a retry after a failure starts from a closed interface
    interface_open = false;
  }
  Configure();
  // DVDD (1.8 V core supply of the sensor) comes from a regulator the MCU enables.
  am_hal_gpio_pinconfig(AM_BSP_GPIO_CAMERA_HM01B0_DVDDEN, g_AM_HAL_GPIO_OUTPUT_12);
  am_hal_gpio_output_set(AM_BSP_GPIO_CAMERA_HM01B0_DVDDEN);
  DelayMs(1);
  hm01b0_mclk_enable(&camera);
  DelayMs(1);
  if (hm01b0_init_if(&camera) != HM01B0_ERR_OK) return CameraStatus::kBusError;
  interface_open = true;
  uint16_t model = 0;
  if (hm01b0_get_modelid(&camera, &model) != HM01B0_ERR_OK) return CameraStatus::kBusError;
  if (model != kModelId) return CameraStatus::kNotFound;
  const uint32_t count = sizeof(sHM01B0InitScript) / sizeof(sHM01B0InitScript[0]);
  if (hm01b0_init_system(&camera, const_cast<hm_script_t*>(sHM01B0InitScript), count) !=
      HM01B0_ERR_OK) {
    return CameraStatus::kBusError;
  }
  // The script leaves the sensor in standby; stream continuously from now on.
  if (hm01b0_set_mode(&camera, HM01B0_REG_MODE_SELECT_STREAMING, 0) != HM01B0_ERR_OK) {
    return CameraStatus::kBusError;
  }
  return CameraStatus::kOk;
}

CameraStatus CaptureFrame(uint8_t* frame) {
  // Skip the rest of a frame already in progress, then catch the start of the next one.
  if (!WaitFor(Vsync, false, kFrameStartTimeoutTicks) ||
      !WaitFor(Vsync, true, kFrameStartTimeoutTicks)) {
    return CameraStatus::kNoFrame;
  }
  for (int y = 0; y < kFrameHeight; ++y) {
    if (!WaitFor(Hsync, true, kLineTimeoutTicks)) return CameraStatus::kBrokenFrame;
    if (!ReadLine(frame + y * kFrameWidth)) return CameraStatus::kBrokenFrame;
    if (!WaitFor(Hsync, false, kLineTimeoutTicks)) return CameraStatus::kBrokenFrame;
  }
  return CameraStatus::kOk;
}

}  // namespace edge
