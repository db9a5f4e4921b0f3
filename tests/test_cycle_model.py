"""The Cortex-M4 cycle estimate (firmware/tools/m4_cycles.c) on hand-written instruction sequences.

Each sequence is assembled with arm-none-eabi-as and timed by the model on a given path (the host
harness m4_cycles_trace.c, no QEMU); the expected count is worked out by hand from the Cortex-M4
Technical Reference Manual's timings (zero wait states), the rule in the comment beside it. Every
timing rule is then mutated in a copy of the source, and some sequence must come out wrong. Last, a
tiny bare-metal program runs under QEMU with the plugin, whose per-block bookkeeping must give the
same cycles as the model on the same path. Needs gcc, the Arm assembler and qemu-system-arm, which
CI installs; no firmware dependencies.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from firmware_models import require_tools

from vwwtorch.firmware.toolchain.compiler import firmware_dir

TOOLS = firmware_dir() / "tools"
ARCH = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]


@dataclass(frozen=True)
class Case:
    name: str
    code: str                    # assembly, with labels
    path: tuple[tuple[str, str], ...]  # stretches that ran, FROM label up to TO label
    cycles: int                  # worked out by hand from the TRM


CASES = [
    # Loads are 2 cycles; the next load or store pipelines behind one (1 cycle) unless its address
    # uses the loaded register.
    Case("load pair", "a: ldr r0, [r1]\n ldr r2, [r3]\nb:", (("a", "b"),), 2 + 1),
    Case("dependent load pair", "a: ldr r0, [r1]\n ldr r2, [r0]\nb:", (("a", "b"),), 2 + 2),
    # The TRM's own examples: "normally three cycles total", "... four cycles total".
    Case("load, store immediate", "a: ldr r0, [r1, r2]\n str r0, [r3, #20]\nb:", (("a", "b"),), 3),
    Case("load, store register offset", "a: ldr r0, [r1, r2]\n str r1, [r3, r2]\nb:", (("a", "b"),), 3),
    Case("three loads", "a: ldr r0, [r1, r5]\n ldr r1, [r2]\n ldr r2, [r3, #4]\nb:", (("a", "b"),), 4),
    # A store with an immediate offset is 1 cycle, with a register offset 2; nothing pipelines after one.
    Case("store, load", "a: str r0, [r1]\n ldr r2, [r3]\nb:", (("a", "b"),), 1 + 2),
    Case("store register offset, load", "a: str r0, [r1, r2]\n ldr r3, [r4]\nb:", (("a", "b"),), 2 + 2),
    # An address from the data-processing instruction just before: one cycle more (no forwarding).
    Case("address just computed", "a: adds r1, #4\n ldr r0, [r1]\nb:", (("a", "b"),), 1 + 2 + 1),
    Case("address computed earlier", "a: adds r2, #4\n ldr r0, [r1]\nb:", (("a", "b"),), 1 + 2),
    # LDM/STM/PUSH/POP: 1 + N; LDRD 1 + 2, never pipelined.
    Case("LDM", "a: ldmia r0!, {r1-r4}\nb:", (("a", "b"),), 1 + 4),
    Case("PUSH", "a: push {r4-r7, lr}\nb:", (("a", "b"),), 1 + 5),
    Case("load, LDRD", "a: ldr r3, [r4]\n ldrd r0, r1, [r2]\nb:", (("a", "b"),), 2 + 3),
    # A loop: B<cond> taken 1 + P (P = 1 for a direct branch), not taken 1.
    Case("taken loop branch", "a: movs r1, #3\nloop: subs r1, #1\n bne loop\ndone: nop\nend:",
         (("a", "done"), ("loop", "done"), ("loop", "end")), 1 + (1 + 2) + (1 + 2) + (1 + 1) + 1),
    # A taken branch to a 32-bit instruction at a halfword (not word) address refills one cycle more.
    Case("branch to an unaligned 32-bit target",
         ".balign 4\na: nop\nloop: subs.w r1, r1, #1\n bne loop\ndone: nop\nend:",
         (("a", "done"), ("loop", "end")), 1 + 1 + (1 + 2) + 1 + 1 + 1),
    Case("branch to an aligned 32-bit target",
         ".balign 4\na: nop\n nop\nloop: subs.w r1, r1, #1\n bne loop\ndone: nop\nend:",
         (("a", "done"), ("loop", "end")), 2 + 1 + (1 + 1) + 1 + 1 + 1),
    # The inner product of two pairs: 4 pipelined loads (2 + 1 + 1 + 1), 4 single-cycle SMLADs.
    Case("SMLAD chain", "a: ldr r0, [r4]\n ldr r1, [r4, #4]\n ldr r2, [r5]\n ldr r3, [r5, #4]\n"
         " smlad r6, r0, r2, r6\n smlad r6, r1, r3, r6\n smlad r7, r0, r3, r7\n smlad r7, r1, r2, r7\nb:",
         (("a", "b"),), 5 + 4),
    # BL 1 + P (1), BX 1 + P (2: a register target is known only when it executes).
    Case("call and return", "a: bl f\nback: nop\ndone:\nf: bx lr\nf_end:",
         (("a", "back"), ("f", "f_end"), ("back", "done")), (1 + 1) + (1 + 2) + 1),
    # POP {.., PC}: 1 + N, then P = 3 (a load of the PC blocks: the target comes from memory).
    Case("POP PC", "a: pop {r4, pc}\nskipped: nop\ntarget: nop\nb:", (("a", "skipped"), ("target", "b")),
         (1 + 2) + 3 + 1),
    # TBB: 2 for the load, 1 for the add, 3 for the refill.
    Case("TBB", "a: tbb [pc, r0]\ntable: .byte 1, 1\ntarget: nop\nend:", (("a", "table"), ("target", "end")),
         6 + 1),
    # IT folds into a preceding 16-bit instruction; after a 32-bit one it costs a cycle.
    Case("IT folded", "a: cmp r0, #0\n it eq\n moveq r1, #1\nb:", (("a", "b"),), 1 + 0 + 1),
    Case("IT after 32-bit", "a: cmp.w r0, #0\n it eq\n moveq r1, #1\nb:", (("a", "b"),), 1 + 1 + 1),
    # MUL, MLA, SMULL: 1; SDIV: 2-12 by the operands, charged 12.
    Case("multiply and divide", "a: mul r0, r1, r2\n mla r0, r1, r2, r0\n smull r0, r1, r2, r3\n"
         " sdiv r0, r1, r2\nb:", (("a", "b"),), 1 + 1 + 1 + 12),
    Case("DSP", "a: sxtab16 r0, r1, r2\n sel r3, r4, r5\n smmulr r0, r1, r2\n ssat r0, #8, r1\nb:",
         (("a", "b"),), 4),
    # FPU: VDIV 14, VMLA 3, VADD 1, VLDR 2, VPUSH 1 + N.
    Case("FPU", "a: vdiv.f32 s0, s1, s2\n vmla.f32 s0, s1, s2\n vadd.f32 s0, s1, s2\n vldr s0, [r0]\n"
         " vpush {s16-s19}\nb:", (("a", "b"),), 14 + 3 + 1 + 2 + 5),
]


@pytest.fixture(scope="module")
def tools():
    require_tools("gcc", "arm-none-eabi-as", "arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="module")
def model(tools, tmp_path_factory):
    return harness(tmp_path_factory.mktemp("harness"))


@pytest.fixture(scope="module")
def assembled(tools, tmp_path_factory):
    """Every case assembled once: name -> (code bytes, path as the harness reads it)."""
    out = tmp_path_factory.mktemp("cases")
    cases = {}
    for k, case in enumerate(CASES):
        binary, labels = assemble(case.code, out, f"case{k}")
        cases[case.name] = (binary, "".join(f"{labels[a]:#x} {labels[b]:#x}\n" for a, b in case.path))
    return cases


def harness(out: Path, source: Path = TOOLS / "m4_cycles.c") -> Path:
    program = out / "m4_cycles_trace"
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-I", str(TOOLS), "-o", str(program),
                    str(TOOLS / "m4_cycles_trace.c"), str(source)], check=True)
    return program


def assemble(code: str, out: Path, name: str) -> tuple[Path, dict[str, int]]:
    """The code as raw bytes at address 0, and its labels' addresses."""
    source, obj, binary = out / f"{name}.s", out / f"{name}.o", out / f"{name}.bin"
    source.write_text(".syntax unified\n.thumb\n.text\n" + code + "\nend_nop: nop\n.balign 4\n")
    subprocess.run(["arm-none-eabi-as", *ARCH, "-o", str(obj), str(source)], check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", str(obj), str(binary)], check=True)
    symbols = subprocess.run(["arm-none-eabi-nm", str(obj)], capture_output=True, text=True, check=True).stdout
    labels = {parts[2]: int(parts[0], 16) for parts in map(str.split, symbols.splitlines()) if len(parts) == 3}
    return binary, labels


def model_cycles(program: Path, binary: Path, path: str, base: int = 0) -> tuple[int, int]:
    """(instructions, cycles) of the code in `binary` at `base` run along `path`, as the model counts."""
    done = subprocess.run([str(program), str(binary), hex(base)], input=path, capture_output=True, text=True,
                          check=True)
    _, instructions, _, cycles = done.stdout.split()
    return int(instructions), int(cycles)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sequence_cycles_match_the_manual(model, assembled, case):
    assert model_cycles(model, *assembled[case.name])[1] == case.cycles


# Each timing rule, broken in a copy of m4_cycles.c: (what, original text, mutated text).
MUTATIONS = [
    ("single load 1 cycle", "  o->kind = M4_LOAD;\n  o->cycles = 2;", "  o->kind = M4_LOAD;\n  o->cycles = 1;"),
    ("no load pipelining", "cycles -= 1;", "cycles -= 0;"),
    ("pipelining ignores the dependency", "(cur->kind == M4_LOAD || cur->kind == M4_STORE_REG) &&\n"
     "      !(prev->written & cur->address)", "(cur->kind == M4_LOAD || cur->kind == M4_STORE_REG)"),
    ("stores pipeline too", "cur->kind == M4_STORE_REG) &&", "cur->kind == M4_STORE_REG || cur->kind == M4_STORE_IMM) &&"),
    ("no address stall", "cycles += 1;  /* the address waits", "cycles += 0;  /* the address waits"),
    ("stores 2 cycles", "register_offset ? 2 : 1;", "register_offset ? 2 : 2;"),
    ("register-offset stores 1 cycle", "register_offset ? 2 : 1;", "register_offset ? 1 : 1;"),
    ("LDM N cycles", "block(o, LOW(hw >> 8), 1 + count_registers", "block(o, LOW(hw >> 8), 0 + count_registers"),
    ("PUSH without LR", "1 + count_registers(hw & 0xFF) + ((hw >> 8) & 1));\n  } else if ((hw & 0xFE00) == 0xBC00)",
     "1 + count_registers(hw & 0xFF));\n  } else if ((hw & 0xFE00) == 0xBC00)"),
    ("LDRD 2 cycles", "REG(rn), 3);  /* LDRD", "REG(rn), 2);  /* LDRD"),
    ("direct refill 2", "kRefill[] = {0, 1, 1, 2, 3}", "kRefill[] = {0, 2, 2, 2, 3}"),
    ("register refill 1", "kRefill[] = {0, 1, 1, 2, 3}", "kRefill[] = {0, 1, 1, 1, 3}"),
    ("load refill 2", "kRefill[] = {0, 1, 1, 2, 3}", "kRefill[] = {0, 1, 1, 2, 2}"),
    ("no unaligned-target cycle", "refill += 1;  /* a second fetch */", "refill += 0;  /* a second fetch */"),
    ("not-taken branches refill", "if (!taken || branch->branch", "if (branch->branch"),
    ("IT never folds", "M4_NOT_BRANCH ? 0 : 1;", "M4_NOT_BRANCH ? 1 : 1;"),
    ("TBB 5 cycles", "REG(hw2), 3);", "REG(hw2), 2);"),
    ("divide 2 cycles", "#define DIVIDE_CYCLES 12", "#define DIVIDE_CYCLES 2"),
    ("DSP and multiply 2 cycles", "data(o, REG(rd));  /* register data processing", "data(o, REG(rd)); o->cycles = 2;  /* "),
    ("FPU divide 1 cycle", "#define FPU_DIVIDE_CYCLES 14", "#define FPU_DIVIDE_CYCLES 1"),
    ("FPU MAC 1 cycle", "#define FPU_MAC_CYCLES 3", "#define FPU_MAC_CYCLES 1"),
    ("VPUSH N cycles", "1 + (hw2 & 0xFF));", "(hw2 & 0xFF));"),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_timing_rule_is_pinned_by_a_sequence(assembled, tmp_path, mutation):
    _, original, mutated = mutation
    source = (TOOLS / "m4_cycles.c").read_text()
    assert source.count(original) == 1, "the mutation no longer applies: update it with the source"
    copy = tmp_path / "m4_cycles.c"
    copy.write_text(source.replace(original, mutated))
    program = harness(tmp_path, copy)
    wrong = [case.name for case in CASES if model_cycles(program, *assembled[case.name])[1] != case.cycles]
    assert wrong, "no sequence notices the broken rule"


E2E_PROGRAM = """
.syntax unified
.thumb
.section .vectors, "a"
.word 0x20004000
.word reset + 1
.text
.thumb_func
reset:
  ldr r1, =0x20000000
  mov r3, r1
  movs r5, #4
  bl vww_inference_begin
body:
  ldr r0, [r1]
  ldr r2, [r3, #4]
loop:
  ldr r6, [r1], #4
  smlad r7, r6, r6, r7
  subs r5, #1
  bne loop
  bl leaf
  bl vww_inference_end
  movs r0, #0x18
  ldr r1, =0x20026
  bkpt 0xab
.thumb_func
leaf:
  push {r4, lr}
  mov r4, r1
  ldr r0, [r4]
  pop {r4, pc}
.thumb_func
.global vww_inference_begin
vww_inference_begin:
  bx lr
begin_end:
.thumb_func
.global vww_inference_end
vww_inference_end:
  bx lr
.pool
"""


def test_the_qemu_plugin_adds_up_blocks_like_the_model(model, tmp_path, monkeypatch):
    """QEMU runs the program in translated blocks; the plugin settles branches and pairs across blocks
    when the next one starts. Between the markers it must count what the model counts on the path."""
    from vwwtorch.firmware.toolchain import insn_count

    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "cache"))
    source, elf = tmp_path / "e2e.s", tmp_path / "e2e.elf"
    source.write_text(E2E_PROGRAM)
    subprocess.run(["arm-none-eabi-gcc", *ARCH, "-nostdlib", "-Wl,--section-start=.vectors=0",
                    "-Wl,-Ttext=0x40", "-Wl,-e,reset", "-o", str(elf), str(source)], check=True)
    counts = tmp_path / "counts.txt"
    subprocess.run(["qemu-system-arm", "-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial",
                    "none", "-kernel", str(elf), "-semihosting-config", "enable=on,target=native",
                    *insn_count.qemu_arguments(elf, "arm-none-eabi-nm", counts)], check=True, timeout=60)
    [(instructions, cycles)] = insn_count.read_counts(counts)

    binary = tmp_path / "e2e.bin"
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", str(elf), str(binary)], check=True)
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    at = {parts[2]: int(parts[0], 16) for parts in map(str.split, symbols.splitlines()) if len(parts) == 3}
    after = lambda label, n: at[label] + n  # noqa: E731
    # From the begin marker's block to the end marker's: its BX, the body, 4 loop turns, the call.
    path = [(at["vww_inference_begin"], at["begin_end"]), (at["body"], at["loop"])]
    path += [(at["loop"], after("loop", 4 + 4 + 2 + 2))] * 4
    path += [(after("loop", 12), after("loop", 16)), (at["leaf"], after("leaf", 2 + 2 + 2 + 2)),
             (after("loop", 16), after("loop", 20))]
    counted = model_cycles(model, binary, "".join(f"{a:#x} {b:#x}\n" for a, b in path), base=0x40)
    # The begin marker's counters are read before its block: the refill of the BL into it is inside.
    assert (instructions, cycles) == (counted[0], counted[1] + 1)
    # By hand: the BL's refill 1; BX 1 + 2 (refill); two loads 2 + 1; per turn LDR 2 (1 the first time,
    # behind a load), SMLAD 1, SUBS 1, BNE 1 (+1 taken); BL 1 + 1; PUSH 3, MOV 1, LDR 2 + 1 (its address
    # was just computed), POP 3 + 3; BL 1.
    turns = (1 + 1 + 1 + 2) + 2 * (2 + 1 + 1 + 2) + (2 + 1 + 1 + 1)
    assert cycles == 1 + (1 + 2) + (2 + 1) + turns + (1 + 1) + 3 + 1 + (2 + 1) + (3 + 3) + 1
    assert instructions == 1 + 2 + 4 * 4 + 1 + 4 + 1
