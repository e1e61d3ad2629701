"""The layering of the package (README, "Architecture") is enforced, not a convention.

`lint-imports` checks the contracts in pyproject.toml; these tests check that it passes on the
real tree and that it fails on a copy with a deliberate violation, so the contracts can break.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # The tree's own package, not the one this test process imported.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("adambnn_larq", "converters", "recipes", "studies"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=ignore)
    return tree


def test_the_real_tree_keeps_every_contract():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # The core must not know the command line (even through a function-local import).
        ("models.py", "def _f():\n    from adambnn_larq.cli import main\n", "Layers"),
        # Deployment sits above the core.
        ("training/driver.py", "from adambnn_larq.deploy import convert_model\n", "Layers"),
        # The run-directory format is read by processes that never train.
        ("rundir.py", "import tensorflow\n", "need no TensorFlow"),
        # Recipes are loaded by path, never imported by the library.
        ("config.py", "import recipes.common\n", "never imports the recipes"),
    ],
)
def test_a_violation_breaks_a_contract(tmp_path, module, line, broken):
    tree = _copy_tree(tmp_path)
    assert _lint_imports(tree).returncode == 0  # the copy itself is clean
    path = tree / "adambnn_larq" / module
    path.write_text(path.read_text() + "\n\n" + line)
    done = _lint_imports(tree)
    assert done.returncode != 0, done.stdout
    assert "1 broken" in done.stdout
    # The contract's verdict follows its name (possibly wrapped onto the next line).
    flat = " ".join(done.stdout.split())
    verdict = flat[flat.index(broken) :]
    kept = verdict.find("KEPT")
    assert verdict.index("BROKEN") < (kept if kept >= 0 else len(verdict))


def test_a_new_module_must_choose_its_layer(tmp_path):
    tree = _copy_tree(tmp_path)
    (tree / "adambnn_larq" / "newcomer.py").write_text('"""Not in any layer yet."""\n')
    done = _lint_imports(tree)
    assert done.returncode != 0
    assert "newcomer" in done.stdout + done.stderr


def test_light_modules_stay_light():
    """`adambnn --help` and the run-directory readers import no TensorFlow."""
    code = (
        "import sys, adambnn_larq.cli, adambnn_larq.rundir, adambnn_larq.config; "
        "heavy = [m for m in ('tensorflow', 'larq', 'numpy', 'matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # numpy only for rundir's readers; never TensorFlow, larq or matplotlib.
    assert done.stdout.strip() == "['numpy']"


def test_converters_is_a_namespace_over_deploy():
    from adambnn_larq.deploy import benchmark, convert, pytorch_import
    from converters.benchmark import benchmark_host
    from converters.lce import convert_model
    from converters.pytorch import import_pytorch

    assert convert_model is convert.convert_model
    assert benchmark_host is benchmark.benchmark_host
    assert import_pytorch is pytorch_import.import_pytorch


def test_converters_forward_every_name_deploy_exports_and_list_none_of_their_own():
    import converters.benchmark
    import converters.lce
    import converters.pytorch
    from adambnn_larq import deploy

    for module in (converters.lce, converters.pytorch, converters.benchmark):
        assert module.__all__ == deploy.__all__
        assert all(getattr(module, name) is getattr(deploy, name) for name in deploy.__all__)
