/* Cortex-M4 instruction classification and timing: see m4_cycles.h for the rules and what they
 * leave out. Encodings follow the ARMv7-M Architecture Reference Manual's Thumb tables (A5.2,
 * A5.3); only what the timing needs is decoded: the kind, the cycles, branches, the registers an
 * address is formed from and the registers written. */
#include "m4_cycles.h"

#include <stddef.h>

#define REG(n) ((uint16_t)(1u << ((n) & 15u)))  /* a 4-bit register field */
#define LOW(n) ((uint16_t)(1u << ((n) & 7u)))   /* a 3-bit one: r0-r7 */
#define SP 13
#define PC 15

/* Cycles a taken branch adds to refill the pipeline, by enum m4_branch. */
static const uint8_t kRefill[] = {0, 1, 1, 2, 3};
#define MAX_REFILL 3
#define DIVIDE_CYCLES 12     /* SDIV/UDIV: 2 to 12, by the operands; the upper end */
#define FPU_DIVIDE_CYCLES 14 /* VDIV, VSQRT */
#define FPU_MAC_CYCLES 3     /* VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS */

static unsigned count_registers(unsigned list) { return (unsigned)__builtin_popcount(list & 0xFFFFu); }

static void data(m4_insn *o, uint16_t written) {
  o->kind = M4_DATA;
  o->cycles = 1;
  o->written = written;
}

static void load(m4_insn *o, uint16_t address, uint16_t target) {
  o->kind = M4_LOAD;
  o->cycles = 2;
  o->address = address;
  o->written = target;
}

static void store(m4_insn *o, uint16_t address, int register_offset) {
  o->kind = register_offset ? M4_STORE_REG : M4_STORE_IMM;
  o->cycles = register_offset ? 2 : 1;
  o->address = address;
}

static void block(m4_insn *o, uint16_t address, unsigned cycles) {
  o->kind = M4_MEMORY_BLOCK;
  o->cycles = (uint8_t)cycles;
  o->address = address;
}

unsigned m4_insn_size(const uint8_t *code) {
  const unsigned top5 = code[1] >> 3;
  return top5 == 0x1D || top5 == 0x1E || top5 == 0x1F ? 4 : 2;
}

/* --- 16-bit instructions (A5.2) ---------------------------------------------------------------- */

static void misc16(unsigned hw, m4_insn *o) {  /* 1011 xxxx xxxx xxxx */
  if ((hw & 0xF500) == 0xB100) {  /* CBZ, CBNZ */
    o->branch = M4_BRANCH_CONDITIONAL;
  } else if ((hw & 0xFF00) == 0xB000) {  /* ADD/SUB SP, SP, #imm */
    data(o, REG(SP));
  } else if ((hw & 0xFF00) == 0xB200 || (hw & 0xFF00) == 0xBA00) {  /* SXTH..UXTB, REV* */
    data(o, LOW(hw));
  } else if ((hw & 0xFE00) == 0xB400) {  /* PUSH {list, LR?} */
    block(o, REG(SP), 1 + count_registers(hw & 0xFF) + ((hw >> 8) & 1));
  } else if ((hw & 0xFE00) == 0xBC00) {  /* POP {list, PC?} */
    block(o, REG(SP), 1 + count_registers(hw & 0xFF) + ((hw >> 8) & 1));
    if (hw & 0x100) o->branch = M4_BRANCH_LOAD;
  } else if ((hw & 0xFF00) == 0xBF00 && (hw & 0xF) != 0) {
    o->kind = M4_IT;
  }  /* hints, BKPT, CPS: 1 cycle */
}

static void decode16(unsigned hw, m4_insn *o) {
  if ((hw >> 14) == 0) {  /* shift, add, subtract, move, compare */
    const unsigned op = hw >> 11;
    if (op == 5) {
      data(o, 0);  /* CMP #imm8 */
    } else {
      data(o, op >= 4 ? LOW(hw >> 8) : LOW(hw));  /* MOV/ADD/SUB #imm8: Rdn in [10:8] */
    }
  } else if ((hw >> 10) == 0x10) {  /* data processing, registers */
    const unsigned op = (hw >> 6) & 0xF;
    data(o, op == 8 || op == 10 || op == 11 ? 0 : LOW(hw));  /* TST, CMP, CMN write nothing */
  } else if ((hw >> 10) == 0x11) {  /* special data processing, branch and exchange */
    const unsigned op = (hw >> 8) & 3;
    const unsigned rd = ((hw >> 4) & 8) | (hw & 7);
    if (op == 3) {
      o->branch = M4_BRANCH_REGISTER;  /* BX, BLX */
    } else if (op == 1) {
      data(o, 0);  /* CMP (high registers) */
    } else if (rd == PC) {
      o->branch = M4_BRANCH_REGISTER;  /* ADD PC, MOV PC */
    } else {
      data(o, REG(rd));
    }
  } else if ((hw >> 11) == 0x09) {  /* LDR (literal): the address comes from the PC */
    load(o, 0, LOW(hw >> 8));
  } else if ((hw >> 12) == 0x5) {  /* load/store, register offset */
    const uint16_t address = LOW(hw >> 3) | LOW(hw >> 6);
    if (((hw >> 9) & 7) <= 2) {
      store(o, address, 1);  /* STR, STRH, STRB */
    } else {
      load(o, address, LOW(hw));
    }
  } else if ((hw >> 13) == 0x3 || (hw >> 12) == 0x8) {  /* STR/LDR(B) #imm5, STRH/LDRH #imm5 */
    if ((hw >> 11) & 1) {
      load(o, LOW(hw >> 3), LOW(hw));
    } else {
      store(o, LOW(hw >> 3), 0);
    }
  } else if ((hw >> 12) == 0x9) {  /* STR/LDR [SP, #imm8] */
    if ((hw >> 11) & 1) {
      load(o, REG(SP), LOW(hw >> 8));
    } else {
      store(o, REG(SP), 0);
    }
  } else if ((hw >> 12) == 0xA) {  /* ADR, ADD Rd, SP, #imm8 */
    data(o, LOW(hw >> 8));
  } else if ((hw >> 12) == 0xB) {
    misc16(hw, o);
  } else if ((hw >> 12) == 0xC) {  /* STM, LDM */
    block(o, LOW(hw >> 8), 1 + count_registers(hw & 0xFF));
  } else if ((hw >> 12) == 0xD) {  /* B<cond>; UDF and SVC */
    if (((hw >> 8) & 0xF) < 14) o->branch = M4_BRANCH_CONDITIONAL;
  } else if ((hw >> 11) == 0x1C) {  /* B */
    o->branch = M4_BRANCH_DIRECT;
  }
}

/* --- 32-bit instructions (A5.3) ---------------------------------------------------------------- */

static void fpu(unsigned hw1, unsigned hw2, m4_insn *o) {  /* coprocessor space */
  const unsigned coprocessor = (hw2 >> 8) & 0xF;
  if (coprocessor != 10 && coprocessor != 11) return;
  const unsigned rn = hw1 & 0xF;
  if ((hw1 & 0x0E00) == 0x0C00) {  /* extension register loads and stores, 64-bit transfers */
    const unsigned op = (hw1 >> 4) & 0x1F;
    if ((op & 0x1E) == 0x04) {
      o->cycles = 2;  /* VMOV two core registers <-> two singles or a double */
    } else if ((op & 0x12) == 0x10) {
      block(o, REG(rn), coprocessor == 11 ? 3 : 2);  /* VLDR, VSTR: single 2, double 3 */
    } else {
      block(o, REG(rn), 1 + (hw2 & 0xFF));  /* VLDM, VSTM, VPUSH, VPOP: 1 + words */
    }
  } else if ((hw1 & 0x0F00) == 0x0E00) {
    if (hw2 & 0x10) {  /* register transfers: VMOV core <-> single 2, VMRS/VMSR 1 */
      o->cycles = ((hw1 >> 5) & 7) == 7 ? 1 : 2;
      return;
    }
    const unsigned opc1 = (hw1 >> 4) & 0xB;  /* bits 23, 21, 20 (D masked) */
    if (opc1 == 0x8 || (opc1 == 0xB && (hw1 & 0xF) == 1 && ((hw2 >> 6) & 3) == 3)) {
      o->cycles = FPU_DIVIDE_CYCLES;  /* VDIV, VSQRT */
    } else if (opc1 == 0x0 || opc1 == 0x1 || opc1 == 0x9 || opc1 == 0xA) {
      o->cycles = FPU_MAC_CYCLES;
    }
  }
}

static void branches32(unsigned hw1, unsigned hw2, m4_insn *o) {  /* branches and misc control */
  const unsigned op = (hw2 >> 12) & 5;
  if (op == 0) {
    if (((hw1 >> 7) & 7) != 7) o->branch = M4_BRANCH_CONDITIONAL;  /* else MSR, MRS, hints, barriers */
  } else if (op == 1 || op == 5) {
    o->branch = M4_BRANCH_DIRECT;  /* B.W, BL */
  }
}

static void dual_exclusive_table(unsigned hw1, unsigned hw2, m4_insn *o) {
  const unsigned op1 = (hw1 >> 7) & 3, op2 = (hw1 >> 4) & 3, op3 = (hw2 >> 4) & 0xF;
  const unsigned rn = hw1 & 0xF;
  if (op1 == 0 && op2 == 0) {
    load(o, REG(rn), REG(hw2 >> 8));  /* STREX pipelines like a load; writes its status */
  } else if (op1 == 0 && op2 == 1) {
    load(o, REG(rn), REG(hw2 >> 12));  /* LDREX */
  } else if (op1 == 1 && op2 == 1 && op3 <= 1) {
    /* TBB, TBH: 2 cycles for the load, 1 for the add, then the refill */
    block(o, (rn == PC ? 0 : REG(rn)) | REG(hw2), 3);
    o->branch = M4_BRANCH_LOAD;
  } else if (op1 == 1 && op2 <= 1) {
    load(o, REG(rn), op2 ? REG(hw2 >> 12) : REG(hw2));  /* LDREXB/H, STREXB/H */
  } else {
    block(o, rn == PC ? 0 : REG(rn), 3);  /* LDRD, STRD: the two words pipeline, 1 + 2 */
  }
}

static void load_single32(unsigned hw1, unsigned hw2, m4_insn *o, int word) {
  const unsigned rn = hw1 & 0xF, rt = (hw2 >> 12) & 0xF;
  const int register_offset = rn != PC && !(hw1 & 0x80) && ((hw2 >> 6) & 0x3F) == 0;
  const uint16_t address = (rn == PC ? 0 : REG(rn)) | (register_offset ? REG(hw2) : 0);
  if (rt != PC) {
    load(o, address, REG(rt));
  } else if (word) {
    block(o, address, 2);  /* LDR PC: blocking, 2 for the load then the refill */
    o->branch = M4_BRANCH_LOAD;
  }  /* PLD, PLI: hints, 1 cycle */
}

static void decode32(unsigned hw1, unsigned hw2, m4_insn *o) {
  const unsigned op1 = (hw1 >> 11) & 3, op2 = (hw1 >> 4) & 0x7F;
  const unsigned rn = hw1 & 0xF, rd = (hw2 >> 8) & 0xF, rt = (hw2 >> 12) & 0xF;
  if (op1 == 1) {
    if ((op2 & 0x64) == 0x00) {  /* LDM, STM, PUSH.W, POP.W: list in the second halfword */
      block(o, REG(rn), 1 + count_registers(hw2));
      if ((hw1 & 0x10) && (hw2 & 0x8000)) o->branch = M4_BRANCH_LOAD;
    } else if ((op2 & 0x64) == 0x04) {
      dual_exclusive_table(hw1, hw2, o);
    } else if ((op2 & 0x60) == 0x20) {  /* data processing, shifted register */
      data(o, rd == PC ? 0 : REG(rd));  /* TST, TEQ, CMP, CMN: Rd = PC */
    } else {
      fpu(hw1, hw2, o);
    }
  } else if (op1 == 2) {
    if (hw2 & 0x8000) {
      branches32(hw1, hw2, o);
    } else {  /* data processing, immediate (also MOVW/MOVT, SSAT/USAT, BFI, UBFX, SBFX) */
      data(o, rd == PC ? 0 : REG(rd));
    }
  } else if ((op2 & 0x71) == 0x00) {  /* store single */
    const int register_offset = !(hw1 & 0x80) && ((hw2 >> 6) & 0x3F) == 0;
    store(o, REG(rn) | (register_offset ? REG(hw2) : 0), register_offset);
  } else if ((op2 & 0x67) == 0x01 || (op2 & 0x67) == 0x03 || (op2 & 0x67) == 0x05) {
    load_single32(hw1, hw2, o, (op2 & 0x67) == 0x05);
  } else if ((op2 & 0x70) == 0x20 || (op2 & 0x78) == 0x30) {
    data(o, REG(rd));  /* register data processing (SXTAB16, SADD16, SEL, ...), multiply, MAC */
  } else if ((op2 & 0x78) == 0x38) {  /* long multiply (RdLo, RdHi), divide */
    const unsigned op = op2 & 7, op_low = (hw2 >> 4) & 0xF;
    if ((op == 1 || op == 3) && op_low == 0xF) {
      data(o, REG(rd));
      o->cycles = DIVIDE_CYCLES;
    } else {
      data(o, REG(rd) | REG(rt));
    }
  } else if (op2 & 0x40) {
    fpu(hw1, hw2, o);
  }
}

void m4_decode(const uint8_t *code, m4_insn *out) {
  const unsigned hw1 = code[0] | (unsigned)code[1] << 8;
  m4_insn o = {2, M4_OTHER, M4_NOT_BRANCH, 1, 0, 0};
  if (m4_insn_size(code) == 4) {
    o.size = 4;
    decode32(hw1, code[2] | (unsigned)code[3] << 8, &o);
  } else {
    decode16(hw1, &o);
  }
  *out = o;
}

static int accesses_memory(const m4_insn *i) {
  return i->kind == M4_LOAD || i->kind == M4_STORE_IMM || i->kind == M4_STORE_REG || i->kind == M4_MEMORY_BLOCK;
}

unsigned m4_cycles_after(const m4_insn *prev, const m4_insn *cur) {
  if (cur->kind == M4_IT) {  /* folded into a preceding 16-bit instruction that did not branch */
    return prev != NULL && prev->size == 2 && prev->branch == M4_NOT_BRANCH ? 0 : 1;
  }
  unsigned cycles = cur->cycles;
  if (prev == NULL) return cycles;
  if (accesses_memory(cur) && prev->kind == M4_DATA && (prev->written & cur->address)) {
    cycles += 1;  /* the address waits for the register bank: no forwarding path */
  }
  if (prev->kind == M4_LOAD && (cur->kind == M4_LOAD || cur->kind == M4_STORE_REG) &&
      !(prev->written & cur->address)) {
    cycles -= 1;  /* the address phase overlaps the previous load's data phase */
  }
  return cycles;
}

unsigned m4_branch_cycles(const m4_insn *branch, int taken, const m4_insn *target, uint32_t target_address) {
  if (!taken || branch->branch == M4_NOT_BRANCH) return 0;
  unsigned refill = kRefill[branch->branch];
  if (target != NULL && target->size == 4 && (target_address & 2)) refill += 1;  /* a second fetch */
  return refill > MAX_REFILL ? MAX_REFILL : refill;
}
