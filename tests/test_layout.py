"""The layout: the library (autoal_fast outside experiment/ and cli.py) never imports the harness."""
import ast
import pathlib
import subprocess
import sys

import autoal_fast

PKG = pathlib.Path(autoal_fast.__file__).resolve().parent
HARNESS = ("autoal_fast.experiment", "autoal_fast.cli")


def _module_name(path: pathlib.Path) -> str:
    parts = ("autoal_fast",) + path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_modules():
    for path in sorted(PKG.rglob("*.py")):
        name = _module_name(path)
        if not any(name == h or name.startswith(h + ".") for h in HARNESS):
            yield name, path


def _imported(name: str, path: pathlib.Path):
    """Absolute names of every module imported anywhere in the file (lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            yield mod
            yield from (f"{mod}.{a.name}" for a in node.names)


def _is_harness(mod: str) -> bool:
    return any(mod == h or mod.startswith(h + ".") for h in HARNESS)


def _kernel_modules():
    import autoal_fast.kernels as K

    for path in sorted(pathlib.Path(K.__file__).resolve().parent.glob("*.py")):
        yield ("autoal_fast.kernels" if path.name == "__init__.py" else f"autoal_fast.kernels.{path.stem}"), path


def test_library_sources_never_import_the_harness():
    mods = list(_library_modules()) + list(_kernel_modules())
    assert {"autoal_fast.autoal", "autoal_fast.streaming", "autoal_fast.distributed"} <= {m for m, _ in mods}
    bad = [(m, imp) for m, path in mods for imp in _imported(m, path) if _is_harness(imp)]
    assert not bad, bad


def test_harness_sources_are_seen_by_the_scan():
    # the scan resolves relative imports: the harness's own imports of itself are found
    path = PKG / "experiment" / "loop.py"
    assert "autoal_fast.experiment.config" in set(_imported("autoal_fast.experiment.loop", path))
    assert "autoal_fast.pool" in set(_imported("autoal_fast.experiment.loop", path))


def test_importing_the_library_loads_no_harness_module():
    names = [m for m, _ in _library_modules()]
    code = ("import importlib, sys\n"
            f"for m in {names!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.startswith({HARNESS!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
