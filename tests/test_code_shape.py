"""Small rooms: no module of the package over `MAX_MODULE_LINES` lines, no function over
`MAX_FUNCTION_LINES` (its signature and code, decorators included; not its docstring, which
should not have to be cut to make room). The modules and functions that were
bigger when the rule came are listed with their size then: they may shrink (lower the number
when they do, and drop the entry once they fit), never grow, and nothing new may join them.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adambnn_larq"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

#: module (relative to adambnn_larq/) -> its lines when it was allowed to be too big.
MODULES_OVER = {
    "rundir.py": 813,
}

#: "module:function" (methods as Class.method) -> its lines when it was allowed to be too big.
FUNCTIONS_OVER = {
    "data/pipelines.py:make_dataset": 121,  # TODO a dataset spec object (issue 23)
    "demo.py:_run_demo_in": 91,
}


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = node.end_lineno - first + 1
            if ast.get_docstring(node, clean=False) is not None:
                docstring = node.body[0]
                lines -= docstring.end_lineno - docstring.lineno + 1
            yield prefix + node.name, lines
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def measure(package: Path = PACKAGE) -> tuple[dict[str, int], dict[str, int]]:
    """Sizes of the modules and functions over the limits: {name: lines}."""
    modules, functions = {}, {}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            modules[name] = len(text.splitlines())
        for function, lines in _functions(ast.parse(text)):
            if lines > MAX_FUNCTION_LINES:
                functions[f"{name}:{function}"] = lines
    return modules, functions


def _problems(found: dict[str, int], allowed: dict[str, int], limit: int) -> list[str]:
    problems = []
    for name, lines in sorted(found.items()):
        if name not in allowed:
            problems.append(f"{name}: {lines} lines, over {limit}; split it along a seam")
        elif lines > allowed[name]:
            problems.append(f"{name}: {lines} lines, grew past its allowance {allowed[name]}")
    return problems


def test_no_module_or_function_grows_past_the_limits():
    modules, functions = measure()
    problems = _problems(modules, MODULES_OVER, MAX_MODULE_LINES)
    problems += _problems(functions, FUNCTIONS_OVER, MAX_FUNCTION_LINES)
    assert not problems, "\n".join(problems)


def test_the_allowances_are_not_stale():
    """An entry that fits the limit now, or that shrank, is removed or lowered: the list only
    shrinks, and each allowance is the current size."""
    modules, functions = measure()
    stale = [
        f"{name}: allowed {lines}, now {found.get(name, 'within the limit')}"
        for allowed, found in ((MODULES_OVER, modules), (FUNCTIONS_OVER, functions))
        for name, lines in allowed.items()
        if found.get(name) != lines
    ]
    assert not stale, "lower or remove these allowances:\n" + "\n".join(stale)


def test_the_check_fails_on_a_new_long_function_and_a_grown_one(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"class C:\n    def f(self):\n{body}")
    _, functions = measure(tmp_path)
    assert list(functions) == ["m.py:C.f"]
    (problem,) = _problems(functions, {}, MAX_FUNCTION_LINES)
    assert problem.startswith(f"m.py:C.f: {MAX_FUNCTION_LINES + 1} lines, over")
    assert _problems(functions, {"m.py:C.f": MAX_FUNCTION_LINES}, MAX_FUNCTION_LINES)
    assert not _problems(functions, {"m.py:C.f": MAX_FUNCTION_LINES + 1}, MAX_FUNCTION_LINES)
