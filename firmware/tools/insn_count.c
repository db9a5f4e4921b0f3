/* A QEMU TCG plugin that counts guest instructions, and estimates Cortex-M4 cycles, per inference.
 *
 *   gcc -shared -fPIC -O2 -o insn_count.so insn_count.c m4_cycles.c
 *   qemu-system-arm ... -plugin ./insn_count.so,begin=0x1234,end=0x1240,out=counts.txt
 *
 * `begin` and `end` are the addresses of vww_inference_begin/vww_inference_end (the firmware calls
 * them around Invoke()); `out` receives one line per inference, "inference INSTRUCTIONS CYCLES",
 * then "total INSTRUCTIONS CYCLES" for the whole run. With `op_begin` and `op_end`
 * (vww_op_begin/vww_op_end, called around each operator) every inference line is followed by
 * "ops N1 N2 ..." and "op_cycles C1 C2 ...": the instructions and cycles of each operator, in order.
 *
 * With `blocks=FILE`, FILE also receives one line per translated block that ran inside an
 * inference, "ADDRESS EXECUTIONS CYCLES", for finding where an operator spends its cycles.
 *
 * Instructions are exact. Cycles are an estimate (m4_cycles.h: the Cortex-M4 TRM's timings with
 * zero-wait-state memory): every instruction of a translated block is classified once, when QEMU
 * translates it, and its cycles inside the block summed then; what depends on the path is settled
 * when the next block starts: whether the block's last instruction branched (its refill, which
 * depends on the target's first instruction) and how that instruction pairs with the next block's
 * first (load pipelining, address dependencies, IT folding).
 *
 * Debian's QEMU 7.2 is built with plugin support but ships no qemu-plugin.h, so the handful of
 * API declarations used here are written out below (plugin API version 1, QEMU 7.x).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m4_cycles.h"

/* --- the part of QEMU's plugin API this file uses ------------------------------------------- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;
/* --------------------------------------------------------------------------------------------- */

#define MAX_INFERENCES 4096
#define MAX_OP_COUNTS (1 << 20)

enum marker { NO_MARKER, BEGIN, END, OP_BEGIN, OP_END };

/* One translated block, as the cycle model sees it. */
typedef struct block_info {
  uint32_t address;          /* of its first instruction */
  uint32_t last_address;     /* of its last */
  uint32_t n_insns;
  uint32_t inner_cycles;     /* every instruction but the first, paired with the one before it */
  m4_insn first, last;
  enum marker marker;
  uint64_t executions, cycles;  /* inside inferences, for `blocks=` */
  struct block_info *next;      /* every block, for `blocks=` */
} block_info;

typedef struct {
  uint64_t instructions, cycles;
} counters;

static counters total;       /* so far (the single M-profile vCPU) */
static const block_info *previous;  /* the block that ran last: its branch is settled by the next */
static uint64_t begin_addr = UINT64_MAX, end_addr = UINT64_MAX;
static uint64_t op_begin_addr = UINT64_MAX, op_end_addr = UINT64_MAX;
static counters started_at, op_started_at;
static int running, op_running;
static counters counts[MAX_INFERENCES];
static int n_counts;
static counters op_counts[MAX_OP_COUNTS];
static int op_first[MAX_INFERENCES + 1];  /* inference i's ops are op_counts[op_first[i] .. op_first[i+1]) */
static int n_op_counts;
static char out_path[1024];
static char blocks_path[1024];
static block_info *all_blocks;

static counters since(counters start) {
  counters d = {total.instructions - start.instructions, total.cycles - start.cycles};
  return d;
}

static void on_marker(enum marker marker) {
  switch (marker) {
    case BEGIN:
      started_at = total;
      running = 1;
      if (n_counts < MAX_INFERENCES) op_first[n_counts] = n_op_counts;
      break;
    case END:
      if (running && n_counts < MAX_INFERENCES) {
        counts[n_counts++] = since(started_at);
        op_first[n_counts] = n_op_counts;
      }
      running = 0;
      break;
    case OP_BEGIN:
      op_started_at = total;
      op_running = running;
      break;
    case OP_END:
      if (op_running && n_op_counts < MAX_OP_COUNTS) op_counts[n_op_counts++] = since(op_started_at);
      op_running = 0;
      break;
    default:
      break;
  }
}

static void on_block(unsigned int vcpu, void *data) {
  (void)vcpu;
  const block_info *b = data;
  /* A marker sees the counters before its block; the refill of the branch into it comes after. */
  if (b->marker != NO_MARKER) on_marker(b->marker);
  unsigned first = m4_cycles_after(previous ? &previous->last : NULL, &b->first);
  if (previous != NULL) {
    const int taken = b->address != previous->last_address + previous->last.size;
    first += m4_branch_cycles(&previous->last, taken, &b->first, b->address);
  }
  total.instructions += b->n_insns;
  total.cycles += first + b->inner_cycles;
  if (running && blocks_path[0]) {
    block_info *counted = (block_info *)b;
    counted->executions += 1;
    counted->cycles += first + b->inner_cycles;
  }
  previous = b;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  block_info *b = calloc(1, sizeof(*b));  /* kept for the run: QEMU may execute the block any time */
  if (b == NULL) return;
  /* Thumb addresses: the symbol has bit 0 set, the block address does not. */
  const uint64_t pc = qemu_plugin_tb_vaddr(tb) & ~(uint64_t)1;
  b->address = (uint32_t)pc;
  b->n_insns = (uint32_t)qemu_plugin_tb_n_insns(tb);
  b->marker = pc == begin_addr ? BEGIN : pc == end_addr ? END : pc == op_begin_addr ? OP_BEGIN
            : pc == op_end_addr ? OP_END : NO_MARKER;
  uint32_t address = b->address;
  for (size_t i = 0; i < b->n_insns; ++i) {
    const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    uint8_t code[4] = {0, 0, 0, 0};
    const size_t size = qemu_plugin_insn_size(insn);
    memcpy(code, qemu_plugin_insn_data(insn), size < 4 ? size : 4);
    m4_insn decoded;
    m4_decode(code, &decoded);
    if (i == 0) {
      b->first = decoded;
    } else {
      b->inner_cycles += m4_cycles_after(&b->last, &decoded);
    }
    b->last = decoded;
    b->last_address = address;
    address += (uint32_t)size;
  }
  b->next = all_blocks;
  all_blocks = b;
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void write_line(FILE *out, const char *line) {
  if (out) {
    fputs(line, out);
  } else {
    qemu_plugin_outs(line);
  }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *data) {
  (void)id;
  (void)data;
  FILE *out = out_path[0] ? fopen(out_path, "w") : NULL;
  char line[64];
  for (int i = 0; i < n_counts; ++i) {
    snprintf(line, sizeof(line), "inference %llu %llu\n", (unsigned long long)counts[i].instructions,
             (unsigned long long)counts[i].cycles);
    write_line(out, line);
    if (op_begin_addr != UINT64_MAX && out) {
      fputs("ops", out);
      for (int k = op_first[i]; k < op_first[i + 1]; ++k) {
        fprintf(out, " %llu", (unsigned long long)op_counts[k].instructions);
      }
      fputs("\nop_cycles", out);
      for (int k = op_first[i]; k < op_first[i + 1]; ++k) {
        fprintf(out, " %llu", (unsigned long long)op_counts[k].cycles);
      }
      fputs("\n", out);
    }
  }
  snprintf(line, sizeof(line), "total %llu %llu\n", (unsigned long long)total.instructions,
           (unsigned long long)total.cycles);
  write_line(out, line);
  if (out) fclose(out);
  FILE *blocks = blocks_path[0] ? fopen(blocks_path, "w") : NULL;
  for (block_info *b = all_blocks; blocks && b; b = b->next) {
    if (b->executions) {
      fprintf(blocks, "%#x %llu %llu\n", (unsigned)b->address, (unsigned long long)b->executions,
              (unsigned long long)b->cycles);
    }
  }
  if (blocks) fclose(blocks);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "begin=", 6) == 0) {
      begin_addr = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1;
    } else if (strncmp(argv[i], "end=", 4) == 0) {
      end_addr = strtoull(argv[i] + 4, NULL, 0) & ~(uint64_t)1;
    } else if (strncmp(argv[i], "op_begin=", 9) == 0) {
      op_begin_addr = strtoull(argv[i] + 9, NULL, 0) & ~(uint64_t)1;
    } else if (strncmp(argv[i], "op_end=", 7) == 0) {
      op_end_addr = strtoull(argv[i] + 7, NULL, 0) & ~(uint64_t)1;
    } else if (strncmp(argv[i], "out=", 4) == 0) {
      snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
    } else if (strncmp(argv[i], "blocks=", 7) == 0) {
      snprintf(blocks_path, sizeof(blocks_path), "%s", argv[i] + 7);
    } else {
      fprintf(stderr, "insn_count: unknown argument %s\n", argv[i]);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
  return 0;
}
