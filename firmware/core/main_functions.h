// The portable application: set up the interpreter once, then capture -> infer -> respond.
#ifndef VWW_CORE_MAIN_FUNCTIONS_H_
#define VWW_CORE_MAIN_FUNCTIONS_H_

namespace vww {

enum class LoopStatus { kContinue, kDone, kFailed };

// Loads the model and allocates the tensor arena. Returns false (reason logged) if it cannot run.
bool setup();

// One cycle. kDone when a finite image source is used up, kFailed on any error (logged).
LoopStatus loop();

// The bytes of the tensor arena the interpreter uses, valid after setup().
unsigned ArenaUsedBytes();

}  // namespace vww

// Called right before and after each Invoke(). They do nothing; the emulator's instruction
// counter (firmware/tools/insn_count.c) finds them by symbol to count one inference exactly.
extern "C" void vww_inference_begin(void);
extern "C" void vww_inference_end(void);

#endif  // VWW_CORE_MAIN_FUNCTIONS_H_
