/* The cycle model on a given execution path, without QEMU (tests/test_cycle_model.py):
 *
 *   gcc -O2 -o m4_cycles_trace m4_cycles_trace.c m4_cycles.c
 *   m4_cycles_trace CODE.bin BASE < path
 *
 * CODE.bin holds Thumb code loaded at address BASE; `path` says what ran, one straight stretch per
 * line, "FROM TO" (hex): every instruction from FROM up to, not including, TO. A branch counts as
 * taken when the next instruction that ran is not the one after it. Prints "instructions N cycles C";
 * with -v first, every instruction's address, size, kind, branch class and cycles as well.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m4_cycles.h"

int main(int argc, char **argv) {
  const int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
  if (argc != 3 + verbose) {
    fprintf(stderr, "usage: %s [-v] CODE.bin BASE < path\n", argv[0]);
    return 2;
  }
  FILE *file = fopen(argv[1 + verbose], "rb");
  if (file == NULL) {
    perror(argv[1 + verbose]);
    return 2;
  }
  static uint8_t code[1 << 20];
  const size_t length = fread(code, 1, sizeof(code), file);
  fclose(file);
  const unsigned long base = strtoul(argv[2 + verbose], NULL, 0);

  m4_insn prev;
  unsigned long prev_address = 0, instructions = 0, cycles = 0;
  int have_prev = 0;
  unsigned long from, to;
  while (scanf("%lx %lx", &from, &to) == 2) {
    for (unsigned long address = from; address < to;) {
      if (address < base || address - base + 2 > length || (address & 1) ||
          address - base + m4_insn_size(code + (address - base)) > length) {
        fprintf(stderr, "address %#lx is outside the code\n", address);
        return 2;
      }
      m4_insn cur;
      m4_decode(code + (address - base), &cur);
      unsigned cost = m4_cycles_after(have_prev ? &prev : NULL, &cur);
      if (have_prev) cost += m4_branch_cycles(&prev, address != prev_address + prev.size, &cur, (uint32_t)address);
      if (verbose) {
        printf("%#lx size %u kind %u branch %u cycles %u\n", address, cur.size, cur.kind, cur.branch, cost);
      }
      cycles += cost;
      instructions += 1;
      prev = cur;
      prev_address = address;
      have_prev = 1;
      address += cur.size;
    }
  }
  printf("instructions %lu cycles %lu\n", instructions, cycles);
  return 0;
}
