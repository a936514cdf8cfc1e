"""``make mutation`` (benchmarks/mutation.py, docs/benchmarks.md) stays pointed at the code it measures: every
target's file, functions and tests exist, and every equivalent mutant listed belongs to a target (when code
moves, a stale entry would otherwise count for nothing, silently, and its reason describe code that is gone).
Cheap checks of the configuration only; the mutation run itself is too slow for the suite."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script(name: str, path: Path):
    """Import a benchmarks/ script as module ``name`` for the time of a test module."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is created
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def mutation():
    yield from _load_script("odl_mutation", ROOT / "benchmarks" / "mutation.py")


def _defs(path: Path) -> set[str]:
    """``func`` and ``Class.method`` of a module's top level."""
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            out.add(node.name + ".")
            out.update(
                f"{node.name}.{m.name}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return out


def test_every_target_names_existing_code_and_tests(mutation):
    for name, t in mutation.TARGETS.items():
        path = ROOT / t.file
        assert path.is_file(), f"{name}: {t.file} does not exist"
        defs = _defs(path)
        for f in t.functions:
            if f == "*":
                continue
            want = f.split(".")[0] + "." if f.endswith(".*") else f
            assert want in defs, f"{name}: {f} is not defined in {t.file} (code moved? update TARGETS)"
        for arg in t.tests:
            if arg.startswith("tests/"):
                assert (ROOT / arg.split("::")[0]).is_file(), f"{name}: test file {arg} does not exist"


def test_every_equivalent_mutant_belongs_to_a_target(mutation):
    equivalent = mutation.load_equivalent()
    assert equivalent and all(reason for reason in equivalent.values()), "each entry needs its one-line reason"
    assert mutation.unowned(equivalent) == []


def test_a_moved_function_leaves_its_equivalents_unowned(mutation):
    eq = {
        "app.core.rounds.x_align_batches__mutmut_6": "moved to app/core/energy.py",
        "app.core.energy.x_align_batches__mutmut_6": "where it is now",
        "device.lpm01a.decode.xǁBinaryDecoderǁfeed__mutmut_1": "a method of a whole-file target",
        "device.nucleo.protocol.xǁFrameDecoderǁfeed__mutmut_7": "a Class.* target",
        "app.core.personalize.x_resolve_model__mutmut_1": "a function the target does not list",
    }
    assert sorted(mutation.unowned(eq)) == [
        "app.core.personalize.x_resolve_model__mutmut_1",
        "app.core.rounds.x_align_batches__mutmut_6",
    ]


@pytest.fixture(scope="module")
def fw_mutation():
    yield from _load_script("odl_fw_mutation", ROOT / "benchmarks" / "firmware_mutation.py")


def test_firmware_mutation_targets_exist(fw_mutation):
    """``make firmware-mutation``: every target's C file and test file exists."""
    for name, t in fw_mutation.TARGETS.items():
        assert (ROOT / t.file).is_file(), name
        assert all((ROOT / a).is_file() for a in t.tests if a.endswith(".py")), name


def test_the_c_mutator_changes_code_only(fw_mutation):
    """The C mutator touches operators and integer literals of code, never comments, strings, character
    literals, preprocessor lines, hex constants, ``->``, ``<<`` or ``+=`` taken apart; applying a mutant
    changes exactly its place."""
    src = (
        "#define N 16\n"
        "/* a < b, 1 */ int f(int a, int *p) {\n"
        "    if (a <= 2 && p->x != 0x1F) return a + 1; /* 3 == 3\n"
        "       still comment 4 > 5 */\n"
        "    puts(\"7 < 8\"); char c = '<';\n"
        "    a += a << 1; // 9 - 9\n"
        "    return a - 1;\n"
        "}\n"
    )
    got = {(m.line, m.old, m.new) for m in fw_mutation.mutants_of(src)}
    assert got == {
        (3, "<=", "<"),
        (3, "&&", "||"),
        (3, "!=", "=="),
        (3, "2", "3"),
        (3, "+", "-"),
        (3, "1", "0"),
        (6, "+=", "-="),
        (6, "1", "0"),
        (7, "-", "+"),
        (7, "1", "0"),
    }
    m = next(m for m in fw_mutation.mutants_of(src) if m.line == 7 and m.op == "-")
    out = fw_mutation.apply(src, m).splitlines()
    assert out[6] == "    return a + 1;" and out[:6] == src.splitlines()[:6]


def test_firmware_mutation_only_runs_named_mutants_of_one_target(fw_mutation, capsys):
    """``--only`` re-runs survivors by the names the run printed; a name that is not a mutant of the file (it
    changed since) or two targets at once are refused before anything is built."""
    with pytest.raises(SystemExit) as exc:
        fw_mutation.main(["train", "wire", "--only", "L23:20 '>='->'>'"])
    assert exc.value.code == 2 and "--only names the mutants of one target" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        fw_mutation.run_target("train", fw_mutation.TARGETS["train"], 0, 1, 0, ["L1:1 'x'->'y'"])
    assert str(exc.value) == "train: no mutant named L1:1 'x'->'y' in firmware/core/train.c (did the file change?)"
