"""Every name a function of the library reads from its module exists there.

Some code paths run only on CUDA (concurrent candidate selection on streams, Triton launches),
so the CPU suite never executes them; a missing import there stays hidden until a GPU run
(it happened: ``LOCAL`` in ``search/candidates.py``). This check reads each module's symbol
tables instead of running it: a name that a function or class body takes from the module's
globals must be bound at module level (assigned, imported, defined) or be a builtin.
"""
import builtins
import pathlib
import symtable

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("autoal_fast", "kernels", "benchmarks") for p in (ROOT / d).rglob("*.py"))
MODULE_DUNDERS = {"__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__path__",
                  "__builtins__", "__annotations__"}


def _unbound_globals(source: str, filename: str) -> list:
    top = symtable.symtable(source, filename, "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    if any(s.get_name() == "*" for s in top.get_symbols()):
        return []  # a star import binds names this check cannot see
    missing = []

    def walk(table):
        for child in table.get_children():
            for sym in child.get_symbols():
                name = sym.get_name()
                if (sym.is_referenced() and sym.is_global() and not sym.is_declared_global()
                        and name not in bound and not hasattr(builtins, name) and name not in MODULE_DUNDERS):
                    missing.append(f"{child.get_name()}:{name}")
            walk(child)

    walk(top)
    return sorted(set(missing))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_global_a_function_reads_is_bound(path):
    assert _unbound_globals(path.read_text(), str(path)) == []


def test_the_check_finds_an_unbound_global():
    src = "import os\n\ndef f():\n    return os.sep, LOCAL, len\n\nclass C:\n    def g(self):\n        return MISSING\n"
    assert _unbound_globals(src, "x.py") == ["f:LOCAL", "g:MISSING"]
