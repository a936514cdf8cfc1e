"""Mutation score of the ODL firmware's portable C core against its native tests (docs/benchmarks.md,
"Firmware mutation").

Usage::

    python benchmarks/firmware_mutation.py                      # every target, a sample of 40 mutants each
    python benchmarks/firmware_mutation.py kernels --sample 0   # every mutant of one target
    python benchmarks/firmware_mutation.py --list               # the targets, their mutant counts

mutmut mutates Python only, so this is a small mutator of its own for C: one change at a time at one place
of a line of code (comments, strings and preprocessor lines are left alone): a comparison flipped or made
strict/loose (``==``/``!=``, ``<``/``<=``, ``>``/``>=``), ``&&``/``||`` swapped, a binary ``+``/``-`` swapped,
``+=``/``-=`` swapped, ``++``/``--`` swapped, an integer literal 0 → 1, 1 → 0 or n → n + 1.  Each mutant is
built with the firmware's own Makefile (``make -C firmware host``: warnings as errors, AddressSanitizer and
UBSan) in a copy of the repository under ``build/fwmutation/<job>/`` and the target's tests run against it
(``pytest -x``, a time limit per mutant).  A test failure, a sanitizer report or a time-out kills the mutant;
a mutant the compiler refuses is *stillborn* and left out of the score.  Score = killed / (built mutants).

The mutants of a target are listed in a fixed order and ``--sample N`` takes N of them with a fixed seed,
so a run can be repeated; ``--sample 0`` runs all.  Results go to ``build/fwmutation/<target>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "fwmutation"


@dataclass(frozen=True)
class Target:
    file: str  # the C file mutated
    tests: tuple[str, ...]  # pytest arguments: the native tests of that code
    timeout_s: int = 240  # per mutant (build + tests)


#: the native tests of the core: the odl-kernels harness (layers, SGD, framing, shuffle), the hostile-input
#: fuzzer (odl-fuzz) and the robust round's protocol tests against odl-host (``-k host`` keeps their native
#: variant and every test of test_firmware_host.py; the QEMU variants need minutes per mutant)
NATIVE = ("tests/device/test_firmware_host.py", "tests/device/test_firmware_robust.py", "-k", "host")
#: ... and for the code behind the protocol (handlers, descriptor and memory plan, arena), also the protocol
#: conformance suite and the memory plan against the estimator, both on odl-host
BOARD = (
    *NATIVE[:2],
    "tests/device/test_board_conformance.py",
    "tests/estimator/test_estimator_firmware_memory.py",
    *NATIVE[2:],
)

#: the NUCLEO-L496ZG board support's register-level parts, natively against the fake STM32L496 (odl-l496); the
#: tests that build the ARM image or a core without the shield are left out (they do not run this code)
L496 = ("tests/device/test_firmware_l496.py", "-k", "not nucleo_image and not vector_table and not without_the_shield")
#: ... and board_l496.c (link, time, marker, idle) through the fake's TIM2/DMA/LPUART/GPIO/NVIC: the test_board_* ones
L496_BOARD = ("tests/device/test_firmware_l496.py", "-k", "test_board_")

TARGETS: dict[str, Target] = {
    # the layer kernels (forward, backward, SGD step) against device.engine bit for bit
    "kernels": Target("firmware/core/kernels.c", NATIVE),
    # the training round (plan, batches, gradient accumulation, validation, best-pass restore, clipping)
    "train": Target("firmware/core/train.c", NATIVE),
    # COBS, CRC and framing against the golden vectors and the Python implementation
    "wire": Target("firmware/core/wire.c", NATIVE),
    # the protocol handlers (requests, checks, the round's reports)
    "proto": Target("firmware/core/proto.c", BOARD),
    # the descriptor parser and the memory plan (layer checks, buffer sizes and carving, BN folding)
    "model": Target("firmware/core/model.c", BOARD),
    # the arena's blobs and the dataset segments (packing, moving down on free, parsing, windows)
    "store": Target("firmware/core/store.c", BOARD),
    # the board's clock plans (MSI/PLL, flash latency, voltage scaling), LPUART and TIM2 dividers, I2C timing
    "l496_calc": Target("firmware/targets/nucleo-l496zg/calc.c", L496),
    # the clock switch's register sequence (RCC, PWR, FLASH) as RM0351 orders it, PLL lock time-outs
    "l496_clock": Target("firmware/targets/nucleo-l496zg/clock.c", L496),
    # the I2C master (start, address, read/write, NACK, stuck bus, time-outs)
    "l496_i2c": Target("firmware/targets/nucleo-l496zg/i2c.c", L496),
    # the LSM6DSO set-up and FIFO reads (ODR/FS codes, sensitivity, words, overrun)
    "l496_lsm6dso": Target("firmware/targets/nucleo-l496zg/lsm6dso.c", L496),
    # the board's link (LPUART1 + DMA rings), time (TIM2 ticks, DWT cycles), D7 marker, idle, sensor wake-ups,
    # against the fake's TIM2/DMA/LPUART/GPIO/NVIC and a simulated host on the wire
    "l496_board": Target("firmware/targets/nucleo-l496zg/board_l496.c", L496_BOARD),
}

# (pattern, replacement) per operator; the patterns avoid the neighbours that make another token
# (``<<``, ``->``, ``++``, ``+=`` ...)
OPERATORS: list[tuple[str, str, str]] = [
    ("==", r"==", "!="),
    ("!=", r"!=", "=="),
    ("<=", r"<=", "<"),
    (">=", r">=", ">"),
    ("<", r"(?<![<\-])<(?![<=])", "<="),
    (">", r"(?<![>\-])>(?![>=])", ">="),
    ("&&", r"&&", "||"),
    ("||", r"\|\|", "&&"),
    ("+=", r"\+=", "-="),
    ("-=", r"-=", "+="),
    ("++", r"\+\+", "--"),
    ("--", r"--", "++"),
    ("+", r"(?<=[\w\)\]] )\+(?= [\w\(])", "-"),
    ("-", r"(?<=[\w\)\]] )-(?= [\w\(])", "+"),
    ("int", r"(?<![\w.])(\d+)(?![\w.])", ""),  # replacement computed: 0 -> 1, 1 -> 0, n -> n + 1
]


@dataclass(frozen=True)
class Mutant:
    line: int  # 1-based
    col: int
    op: str
    old: str
    new: str

    def name(self) -> str:
        return f"L{self.line}:{self.col} {self.old!r}->{self.new!r}"


def _code_part(line: str, in_comment: bool) -> tuple[str, bool]:
    """The line with comments and string/char literals blanked (same length), and whether a block comment
    is still open at its end."""
    out = list(line)
    i, n = 0, len(line)
    while i < n:
        if in_comment:
            end = line.find("*/", i)
            stop = n if end < 0 else end + 2
            out[i:stop] = " " * (stop - i)
            i, in_comment = stop, end < 0
            continue
        c = line[i]
        if line.startswith("//", i):
            out[i:] = " " * (n - i)
            break
        if line.startswith("/*", i):
            in_comment = True
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            out[i : j + 1] = " " * (min(j, n - 1) + 1 - i)
            i = j + 1
            continue
        i += 1
    return "".join(out), in_comment


def mutants_of(source: str) -> list[Mutant]:
    found: list[Mutant] = []
    in_comment = False
    for ln, line in enumerate(source.splitlines(), 1):
        code, in_comment = _code_part(line, in_comment)
        if code.lstrip().startswith("#") or not code.strip():
            continue
        for op, pat, rep in OPERATORS:
            for m in re.finditer(pat, code):
                if op == "int":
                    digits = m.group(1)
                    if digits.startswith("0") and digits != "0":
                        continue  # octal
                    v = int(digits)
                    new = "1" if v == 0 else "0" if v == 1 else str(v + 1)
                    # array sizes and shift amounts are mutated too: the compiler refuses the impossible (stillborn)
                    found.append(Mutant(ln, m.start(), op, digits, new))
                else:
                    found.append(Mutant(ln, m.start(), op, m.group(0), rep))
    return found


def apply(source: str, m: Mutant) -> str:
    lines = source.splitlines(keepends=True)
    s = lines[m.line - 1]
    assert s[m.col : m.col + len(m.old)] == m.old, (m, s)
    lines[m.line - 1] = s[: m.col] + m.new + s[m.col + len(m.old) :]
    return "".join(lines)


def prepare(job: int) -> Path:
    """A copy of the tracked files of the working tree (the firmware is built there by the first mutant)."""
    dst = WORK / f"job{job}"
    if dst.exists():
        shutil.rmtree(dst)
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        p = dst / f
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, p)
    return dst


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a process group of its own, which is killed whole when it ends or times out: a
    mutant that hangs leaves no child behind (an ``odl-host`` spinning in a mutated loop outlived its pytest
    before, and its CPU load made a later CI run's soak test miss the board's heartbeat).  The output goes to
    files, so a child that keeps them open cannot hold the wait."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, start_new_session=True, **kw)
        try:
            proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def run_mutant(work: Path, t: Target, original: str, m: Mutant) -> tuple[str, float, str]:
    """``(status, seconds, detail)`` with status killed, survived, timeout or stillborn."""
    t0 = time.monotonic()
    target = work / t.file
    target.write_text(apply(original, m))
    try:
        b = _run(["make", "-s", "-C", "firmware", "host"], t.timeout_s, cwd=work)
        if b.returncode != 0:
            return "stillborn", time.monotonic() - t0, (b.stdout + b.stderr)[-300:]
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(work), CI="")
        left = max(10.0, t.timeout_s - (time.monotonic() - t0))
        r = _run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *t.tests], left, cwd=work, env=env
        )
        status = "survived" if r.returncode == 0 else "killed"
        tail = [x for x in r.stdout.splitlines() if x.startswith("FAILED")][:1]
        return status, time.monotonic() - t0, tail[0][:200] if tail else ""
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, ""
    finally:
        target.write_text(original)


def run_target(name: str, t: Target, sample: int, jobs: int, seed: int, only: list[str] | None = None) -> dict:
    original = (ROOT / t.file).read_text()
    every = mutants_of(original)
    if only:  # named mutants (as printed, e.g. "L139:25 '-'->'+'"): a survivor re-run against new tests
        by_name = {m.name(): m for m in every}
        missing = [n for n in only if n not in by_name]
        if missing:
            raise SystemExit(f"{name}: no mutant named {', '.join(missing)} in {t.file} (did the file change?)")
        chosen = [by_name[n] for n in only]
    else:
        chosen = (
            every
            if sample <= 0 or sample >= len(every)
            else sorted(random.Random(seed).sample(every, sample), key=lambda m: (m.line, m.col))
        )
    works = [prepare(j) for j in range(jobs)]
    for w in works:  # the unmutated build and tests must pass, or nothing below means anything
        st, _, detail = run_mutant(w, t, original, Mutant(1, 0, "none", "", ""))
        if st != "survived":
            raise SystemExit(f"{name}: the unmutated firmware does not pass its tests ({st}): {detail}")
    print(f"== {name}: {t.file}, {len(chosen)} of {len(every)} mutants, tests: {' '.join(t.tests)}", flush=True)
    results: list[dict] = [{} for _ in chosen]
    free = list(works)

    def one(i: int) -> None:
        w = free.pop()
        try:
            st, sec, detail = run_mutant(w, t, original, chosen[i])
        finally:
            free.append(w)
        results[i] = {"mutant": chosen[i].name(), "status": st, "seconds": round(sec, 1), "detail": detail}
        if st in ("survived", "stillborn"):
            print(
                f"  {name}: {st}: {chosen[i].name()}  | {original.splitlines()[chosen[i].line - 1].strip()[:90]}",
                flush=True,
            )

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(one, range(len(chosen))))
    counts = {k: sum(r["status"] == k for r in results) for k in ("killed", "timeout", "survived", "stillborn")}
    built = counts["killed"] + counts["timeout"] + counts["survived"]
    score = (counts["killed"] + counts["timeout"]) / built if built else float("nan")
    out = {"target": name, "file": t.file, "mutants": len(every), "sampled": len(chosen), "seed": seed, **counts,
           "score": score, "results": results}  # fmt: skip
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.json").write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help=f"targets (default: all): {', '.join(TARGETS)}")
    ap.add_argument("--list", action="store_true", help="show the targets and their mutant counts")
    ap.add_argument("--sample", type=int, default=40, help="mutants per target, chosen with --seed (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="mutants built and tested in parallel")
    ap.add_argument("--only", help="run just these mutants of one target, ';'-separated names as printed")
    a = ap.parse_args(argv)
    names = a.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    only = [n.strip() for n in a.only.split(";") if n.strip()] if a.only else None
    if only and len(names) != 1:
        ap.error("--only names the mutants of one target")
    if a.list:
        for n in names:
            print(f"{n}: {TARGETS[n].file}, {len(mutants_of((ROOT / TARGETS[n].file).read_text()))} mutants")
        return 0
    rows = [run_target(n, TARGETS[n], a.sample, max(1, a.jobs), a.seed, only) for n in names]
    print("\n| target | file | mutants | run | killed (of which time-outs) | survived | stillborn | score |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['target']} | `{r['file']}` | {r['mutants']} | {r['sampled']} | {r['killed'] + r['timeout']} "
            f"({r['timeout']}) | {r['survived']} | {r['stillborn']} | {100 * r['score']:.1f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
