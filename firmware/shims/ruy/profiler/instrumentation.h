// Stand-in for ruy's profiler header, the only piece of ruy that TFLM's reference kernels include
// (fully_connected.h and friends open a `ruy::profiler::ScopeLabel` for ruy's profiler). With
// ruy's profiler off, which is how TFLM builds, a label does nothing; this header says exactly
// that, so the firmware needs no ruy download.
#ifndef VWW_SHIMS_RUY_PROFILER_INSTRUMENTATION_H_
#define VWW_SHIMS_RUY_PROFILER_INSTRUMENTATION_H_

namespace ruy {
namespace profiler {

class ScopeLabel {
 public:
  template <typename... Args>
  explicit ScopeLabel(Args...) {}
};

}  // namespace profiler
}  // namespace ruy

#endif  // VWW_SHIMS_RUY_PROFILER_INSTRUMENTATION_H_
