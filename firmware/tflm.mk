# The TensorFlow Lite Micro sources the application needs, relative to the TFLM tree.
#
# Only these are compiled (not the whole library): the interpreter, allocator and planner, the
# flatbuffer glue, the quantization helpers the kernels call, and `kernel_util.cc`. Kernels come
# per model from `$(MODEL_DIR)/model.mk` (written by `vwwtorch firmware generate`). Boards provide
# their own DebugLog, micro_time and system_setup, so TFLM's defaults for those are left out.
TFLM_CORE_SRCS := \
  tensorflow/compiler/mlir/lite/core/api/error_reporter.cc \
  tensorflow/compiler/mlir/lite/schema/schema_utils.cc \
  tensorflow/lite/core/api/flatbuffer_conversions.cc \
  tensorflow/lite/core/api/tensor_utils.cc \
  tensorflow/lite/core/c/common.cc \
  tensorflow/lite/kernels/internal/common.cc \
  tensorflow/lite/kernels/internal/quantization_util.cc \
  tensorflow/lite/kernels/internal/portable_tensor_utils.cc \
  tensorflow/lite/kernels/internal/reference/portable_tensor_utils.cc \
  tensorflow/lite/kernels/internal/runtime_shape.cc \
  tensorflow/lite/kernels/internal/tensor_ctypes.cc \
  tensorflow/lite/kernels/internal/tensor_utils.cc \
  tensorflow/lite/kernels/kernel_util.cc \
  tensorflow/lite/micro/arena_allocator/non_persistent_arena_buffer_allocator.cc \
  tensorflow/lite/micro/arena_allocator/persistent_arena_buffer_allocator.cc \
  tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.cc \
  tensorflow/lite/micro/flatbuffer_utils.cc \
  tensorflow/lite/micro/memory_helpers.cc \
  tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc \
  tensorflow/lite/micro/memory_planner/linear_memory_planner.cc \
  tensorflow/lite/micro/memory_planner/non_persistent_buffer_planner_shim.cc \
  tensorflow/lite/micro/micro_allocation_info.cc \
  tensorflow/lite/micro/micro_allocator.cc \
  tensorflow/lite/micro/micro_context.cc \
  tensorflow/lite/micro/micro_interpreter.cc \
  tensorflow/lite/micro/micro_interpreter_context.cc \
  tensorflow/lite/micro/micro_interpreter_graph.cc \
  tensorflow/lite/micro/micro_log.cc \
  tensorflow/lite/micro/micro_op_resolver.cc \
  tensorflow/lite/micro/micro_profiler.cc \
  tensorflow/lite/micro/micro_resource_variable.cc \
  tensorflow/lite/micro/micro_utils.cc \
  tensorflow/lite/micro/tflite_bridge/flatbuffer_conversions_bridge.cc \
  tensorflow/lite/micro/tflite_bridge/micro_error_reporter.cc \
  tensorflow/lite/micro/kernels/kernel_util.cc \
  tensorflow/lite/micro/kernels/micro_tensor_utils.cc

# Flags every TFLM translation unit gets (TFLM's own Makefile uses the same defines).
TFLM_DEFINES := -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON -DKERNELS_OPTIMIZED_FOR_SPEED
