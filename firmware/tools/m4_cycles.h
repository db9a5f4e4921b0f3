/* A cycle estimate for Cortex-M4 code: every Thumb/Thumb-2 instruction classified by its encoding
 * and timed by the Cortex-M4 Technical Reference Manual (r0p1, "Processor instruction timings" and
 * "Load/store timings"), assuming zero-wait-state memory.
 *
 * What the model charges:
 *   - data processing, multiply and multiply-accumulate (32 and 64-bit), saturation and every DSP
 *     instruction (SMLAD, SXTAB16, SEL, ...): 1 cycle; SDIV/UDIV 12 (the upper end of 2-12: the
 *     cost depends on the operands, which the model does not see);
 *   - single loads: 2 cycles, 1 when pipelined behind a single load whose destination the address
 *     does not use; stores with an immediate offset: 1 cycle (their data phase overlaps the next
 *     instruction); stores with a register offset: 2, 1 behind a load; nothing pipelines behind a
 *     store, LDRD/STRD (3 cycles) or LDM/STM;
 *   - a load or store whose address uses the register the instruction just before it computed
 *     (a data-processing result): 1 cycle more (no forwarding path to the address generator);
 *   - LDM/STM/PUSH/POP: 1 + N for N registers; LDRD/STRD 3; VLDM/VSTM/VPUSH/VPOP 1 + N words;
 *   - branches: B<cond>/CBZ/CBNZ not taken 1; taken, and B/BL: 1 + P; BX/BLX and writes of PC by
 *     data processing 1 + P; loads of PC (LDR PC, POP {.., PC}, LDM {.., PC}) add P to the load;
 *     TBB/TBH 6. P, the pipeline refill, is 1 for direct branches (the target is computed at decode),
 *     2 for register branches, 3 for loads of PC, one more when the target is a 32-bit instruction
 *     at a halfword (not word) address, at most 3;
 *   - IT: folded into a preceding 16-bit instruction (0 cycles), else 1;
 *   - FPU: VDIV/VSQRT 14, multiply-accumulate forms 3, VLDR 2 (3 for a double), moves between core
 *     and FPU registers 2, other FPU operations 1.
 * What it leaves out: flash or SRAM wait states (the Apollo3 runs from flash through a cache; a
 * miss costs cycles this model does not see), the instruction cache, bus contention between the
 * instruction fetch and data accesses (LDR [PC] literal loads may cost one more), unaligned data
 * accesses (split into several bus transfers on the core), the write buffer filling up, interrupts,
 * and instructions inside an IT block whose condition fails (charged as if they executed).
 */
#ifndef VWW_M4_CYCLES_H_
#define VWW_M4_CYCLES_H_

#include <stdint.h>

/* What an instruction is, for the timing rules. */
enum m4_kind {
  M4_OTHER = 0,     /* no pipelining interactions (hints, barriers, FPU arithmetic, ...) */
  M4_DATA,          /* data processing, multiply, DSP: writes `written` (a dependency for addresses) */
  M4_LOAD,          /* single load (LDR, LDRB, LDRH, LDRSB, LDRSH, LDREX, STREX): pipelines */
  M4_STORE_IMM,     /* single store, immediate offset */
  M4_STORE_REG,     /* single store, register offset */
  M4_MEMORY_BLOCK,  /* LDRD/STRD, LDM/STM/PUSH/POP, FPU loads and stores: no pipelining */
  M4_IT,
};

/* How an instruction changes the flow, for the refill it costs when taken. */
enum m4_branch {
  M4_NOT_BRANCH = 0,
  M4_BRANCH_CONDITIONAL,  /* B<cond>, CBZ, CBNZ: direct, may fall through */
  M4_BRANCH_DIRECT,       /* B, BL */
  M4_BRANCH_REGISTER,     /* BX, BLX, MOV PC / ADD PC */
  M4_BRANCH_LOAD,         /* the target is loaded: LDR PC, POP {PC}, LDM {PC}, TBB, TBH */
};

typedef struct {
  uint8_t size;       /* bytes: 2 or 4 */
  uint8_t kind;       /* enum m4_kind */
  uint8_t branch;     /* enum m4_branch */
  uint8_t cycles;     /* cost on its own (a branch not taken; a branch's refill comes on top) */
  uint16_t address;   /* registers that form a load's or store's address (bit n: Rn) */
  uint16_t written;   /* registers a data-processing instruction writes; a single load's target */
} m4_insn;

/* Size in bytes of the instruction whose first halfword (little-endian) is at `code`. */
unsigned m4_insn_size(const uint8_t *code);

/* Classifies the instruction at `code` (2 or 4 bytes, as m4_insn_size says). */
void m4_decode(const uint8_t *code, m4_insn *out);

/* Cycles of `cur` when it follows `prev` (NULL: nothing known before it), its refill excluded. */
unsigned m4_cycles_after(const m4_insn *prev, const m4_insn *cur);

/* Cycles a branch adds when it was taken (the next instruction executed is not the one after it):
 * the refill P, which depends on the first instruction there (`target`, at `target_address`).
 * 0 for a branch not taken and for any other instruction. */
unsigned m4_branch_cycles(const m4_insn *branch, int taken, const m4_insn *target, uint32_t target_address);

#endif /* VWW_M4_CYCLES_H_ */
