#!/usr/bin/env python3
"""Qt6-clean sources: every Qt and QGIS enum value written in its scoped form, ``exec()``.

    python scripts/qt6_scoped.py [--fix] [PATH ...]        (default: urdm_plugin)

PyQt6 (QGIS 4) drops the unscoped spellings (``Qt.AlignLeft``, ``QSizePolicy.Expanding``,
``Qgis.Warning``, ``QgsUnitTypes.LayoutMillimeters``) and ``exec_()``; the scoped forms
(``Qt.AlignmentFlag.AlignLeft``, ``Qgis.MessageLevel.Warning``, ``exec()``) already work on
QGIS 3.22. Which names are enum values is not listed here: it is read from the running
QGIS and PyQt (an attribute ``Cls.Name`` of a class imported from ``qgis.*`` whose value's
type is an enum nested in ``Cls``), so this runs under any QGIS 3 and covers every enum
they have. Without ``--fix`` it prints each edit it would make and exits 1 when there is
one (``make qt6-fix`` applies them; tests/test_qt6_clean.py runs the check).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
#: Builtin value types that are never enum members (``Qt.Key_A`` is, an int constant is not).
_PLAIN = (bool, int, float, str, bytes, type(None))


def imported_classes(tree: ast.Module) -> Dict[str, object]:
    """Local name -> object for each ``from qgis... import Name`` of the module."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qgis":
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if isinstance(obj, type):
                    names[alias.asname or alias.name] = obj
    return names


def scoped_name(cls: type, attr: str):
    """``EnumName`` when ``cls.attr`` is a value of the enum ``cls.EnumName`` and ``attr`` is
    not itself that enum, else None."""
    try:
        value = getattr(cls, attr)
    except AttributeError:
        return None
    kind = type(value)
    if isinstance(value, type) or kind in _PLAIN or callable(value):
        return None
    enum_name = kind.__name__
    if enum_name == attr or getattr(cls, enum_name, None) is not kind:
        return None
    try:
        getattr(kind, attr)
    except AttributeError:
        return None  # no scoped spelling in this QGIS: leave it
    return enum_name


def edits(source: str, tree: ast.Module) -> Iterator[Tuple[int, int, int, str, str]]:
    """(line, start col, end col, old text, new text) for every unscoped enum and exec_ call."""
    classes = imported_classes(tree)
    lines = [ln.encode("utf-8") for ln in source.splitlines(keepends=True)]  # ast columns are bytes
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or node.lineno != node.end_lineno:
            continue
        old = lines[node.lineno - 1][node.col_offset:node.end_col_offset].decode("utf-8")
        if node.attr == "exec_":
            yield node.lineno, node.col_offset, node.end_col_offset, old, old[: -len("exec_")] + "exec"
        elif isinstance(node.value, ast.Name) and node.value.id in classes:
            enum_name = scoped_name(classes[node.value.id], node.attr)
            if enum_name:
                yield (node.lineno, node.col_offset, node.end_col_offset, old,
                       f"{node.value.id}.{enum_name}.{node.attr}")


def process(path: Path, fix: bool) -> List[str]:
    """The edits for one file as report lines; written into the file when ``fix``."""
    source = path.read_text(encoding="utf-8")
    found = sorted(edits(source, ast.parse(source, str(path))))
    if fix and found:
        lines = [ln.encode("utf-8") for ln in source.splitlines(keepends=True)]
        for line, start, end, _old, new in reversed(found):
            text = lines[line - 1]
            lines[line - 1] = text[:start] + new.encode("utf-8") + text[end:]
        path.write_bytes(b"".join(lines))
    rel = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    return [f"{rel}:{line}: {old} -> {new}" for line, _s, _e, old, new in found]


def python_files(paths: List[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*.py") if "__pycache__" not in f.parts)
        else:
            yield p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, default=[ROOT / "urdm_plugin"])
    ap.add_argument("--fix", action="store_true", help="rewrite the files (default: report only)")
    a = ap.parse_args(argv)
    report = [line for f in python_files(a.paths) for line in process(f, a.fix)]
    print("\n".join(report) if report else "qt6: no unscoped enum and no exec_() left")
    if report:
        print(f"qt6: {len(report)} edit(s) {'made' if a.fix else 'to make: run make qt6-fix'}",
              file=sys.stderr)
    return 1 if report and not a.fix else 0


if __name__ == "__main__":
    sys.exit(main())
