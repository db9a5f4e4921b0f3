/* A QEMU TCG plugin that counts guest instructions per inference.
 *
 *   gcc -shared -fPIC -O2 -o insn_count.so insn_count.c
 *   qemu-system-arm ... -plugin ./insn_count.so,begin=0x1234,end=0x1240,out=counts.txt
 *
 * `begin` and `end` are the addresses of vww_inference_begin/vww_inference_end (the firmware calls
 * them around Invoke()); `out` receives one line per inference with the instructions executed
 * between the two, then a line "total N" for the whole run. Every translated block adds its
 * instruction count to a counter inline (cheap); only the marker blocks call back into us.
 * With `op_begin` and `op_end` (vww_op_begin/vww_op_end, called around each operator) every
 * inference line is followed by "ops N1 N2 ...": the instructions of each operator, in order.
 *
 * Debian's QEMU 7.2 is built with plugin support but ships no qemu-plugin.h, so the handful of
 * API declarations used here are written out below (plugin API version 1, QEMU 7.x).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the part of QEMU's plugin API this file uses ------------------------------------------- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;
/* --------------------------------------------------------------------------------------------- */

#define MAX_INFERENCES 4096
#define MAX_OP_COUNTS (1 << 20)

static uint64_t total;          /* instructions executed so far (the single M-profile vCPU) */
static uint64_t begin_addr = UINT64_MAX, end_addr = UINT64_MAX;
static uint64_t op_begin_addr = UINT64_MAX, op_end_addr = UINT64_MAX;
static uint64_t started_at, op_started_at;
static int running, op_running;
static uint64_t counts[MAX_INFERENCES];
static int n_counts;
static uint64_t op_counts[MAX_OP_COUNTS];
static int op_first[MAX_INFERENCES + 1];  /* inference i's ops are op_counts[op_first[i] .. op_first[i+1]) */
static int n_op_counts;
static char out_path[1024];

static void on_begin(unsigned int vcpu, void *data) {
  (void)vcpu;
  (void)data;
  started_at = total;
  running = 1;
  if (n_counts < MAX_INFERENCES) op_first[n_counts] = n_op_counts;
}

static void on_end(unsigned int vcpu, void *data) {
  (void)vcpu;
  (void)data;
  if (running && n_counts < MAX_INFERENCES) {
    counts[n_counts++] = total - started_at;
    op_first[n_counts] = n_op_counts;
  }
  running = 0;
}

static void on_op_begin(unsigned int vcpu, void *data) {
  (void)vcpu;
  (void)data;
  op_started_at = total;
  op_running = running;
}

static void on_op_end(unsigned int vcpu, void *data) {
  (void)vcpu;
  (void)data;
  if (op_running && n_op_counts < MAX_OP_COUNTS) op_counts[n_op_counts++] = total - op_started_at;
  op_running = 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  /* Thumb addresses: the symbol has bit 0 set, the block address does not. */
  const uint64_t pc = qemu_plugin_tb_vaddr(tb) & ~(uint64_t)1;
  if (pc == begin_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
  if (pc == end_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
  if (pc == op_begin_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_op_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
  if (pc == op_end_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_op_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total,
                                           qemu_plugin_tb_n_insns(tb));
}

static void on_qemu_exit(qemu_plugin_id_t id, void *data) {
  (void)id;
  (void)data;
  FILE *out = out_path[0] ? fopen(out_path, "w") : NULL;
  char line[64];
  for (int i = 0; i <= n_counts; ++i) {
    if (i < n_counts) {
      snprintf(line, sizeof(line), "%llu\n", (unsigned long long)counts[i]);
    } else {
      snprintf(line, sizeof(line), "total %llu\n", (unsigned long long)total);
    }
    if (out) {
      fputs(line, out);
    } else {
      qemu_plugin_outs(line);
    }
    if (i < n_counts && op_begin_addr != UINT64_MAX && out) {
      fputs("ops", out);
      for (int k = op_first[i]; k < op_first[i + 1]; ++k) fprintf(out, " %llu", (unsigned long long)op_counts[k]);
      fputs("\n", out);
    }
  }
  if (out) fclose(out);
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
    } else {
      fprintf(stderr, "insn_count: unknown argument %s\n", argv[i]);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
  return 0;
}
