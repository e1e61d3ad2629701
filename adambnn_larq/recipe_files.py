"""Recipe and study files: finding them by name or path, telling which is which, running them.

Recipes (``recipes/``) return a dict of `adambnn_larq.config.TrainConfig` overrides; studies
(``studies/``) return the runs of a study (`adambnn_larq.study`) and say so with a module-level
``KIND = "study"``. Both are Python files that run with the user's rights when loaded (like
big_vision's configs): a bare name finds only the project's own files, in the checkout this
package belongs to, never a file of the current directory; any other file needs its path.
The library never imports them.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Literal

from adambnn_larq.errors import ConfigError, RecipeNotFoundError

RECIPES = "recipes"
STUDIES = "studies"
#: Where a non-editable install finds the project's own recipes and studies: a checkout.
CHECKOUT_VARIABLE = "ADAMBNN_CHECKOUT"
Kind = Literal["recipe", "study"]


def repository() -> Path:
    """The checkout whose ``recipes/`` and ``studies/`` bare names resolve to: the folder
    beside this package (an editable install or a checkout on ``sys.path``), or
    ``$ADAMBNN_CHECKOUT`` for an install elsewhere. Never the current directory, whose files a
    built-in name must not run."""
    explicit = os.environ.get(CHECKOUT_VARIABLE)
    return Path(explicit).resolve() if explicit else Path(__file__).resolve().parents[1]


def _folders(kind: str) -> list[Path]:
    return [repository() / kind]


def is_explicit_path(name: str) -> bool:
    """Whether a recipe or study argument names a file (contains a "/" or ends in ".py")
    rather than one of the project's own recipes or studies."""
    return "/" in name or os.sep in name or name.endswith(".py")


def file_kind(path: Path) -> Kind:
    """What a config file declares itself to be, read without running it: ``"study"`` when it
    assigns ``KIND = "study"`` at module level, else ``"recipe"``."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return "recipe"
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "KIND" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and node.value.value == "study"
        ):
            return "study"
    return "recipe"


def _recipe_names() -> list[str]:
    return sorted(
        {
            p.stem
            for f in _folders(RECIPES)
            if f.is_dir()
            for p in f.glob("*.py")
            if not p.stem.startswith("_") and p.stem != "common" and file_kind(p) == "recipe"
        }
    )


def find_recipe(name: str) -> Path:
    """The config file for ``name``: a file given by path, or a name of the project's own.

    A name without "/" that does not end in ".py" is one of the project's recipes
    (``recipes/``) or studies (``studies/``) in the checkout this package belongs to
    (`repository`), never a file of the current directory. Any other file is given by its path
    (``./my_recipe.py``, ``recipes/x.py``). Each defines ``get_config(smoke: bool = False) ->
    dict``.

    Raises:
        RecipeNotFoundError: no such file or name (the message lists the names).
    """
    if is_explicit_path(name):
        path = Path(name)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "not found"
            raise RecipeNotFoundError(f"recipe file {path} {what}")
        return path
    for folder in _folders(RECIPES) + _folders(STUDIES):
        path = folder / f"{name}.py"
        if path.is_file():
            return path
    local = Path(RECIPES) / f"{name}.py"
    hint = f"; to run your file {local}, give its path" if local.is_file() else ""
    if not (repository() / RECIPES).is_dir():
        hint += (
            f"; {repository()} is no checkout (a non-editable install?): set "
            f"{CHECKOUT_VARIABLE} to a checkout of adambnn-larq"
        )
    raise RecipeNotFoundError(
        f"no recipe {name!r} in {repository() / RECIPES}; available: "
        f"{', '.join(_recipe_names()) or 'none'}{hint}"
    )


def is_study(recipe: Any) -> bool:
    """Whether a config file's ``get_config()`` describes a study (``adambnn study``): runs
    per dataset, not one training configuration."""
    return isinstance(recipe, dict) and {"datasets", "runs"} <= set(recipe)


def _recipes_package() -> None:
    """Make ``recipes`` importable as a package of the recipe folders, so that a recipe (or a
    study, or a recipe file anywhere) can ``from recipes.common import ...`` without the
    recipes being installed."""
    if RECIPES in sys.modules:
        return
    folders = [str(f) for f in _folders(RECIPES) if f.is_dir()]
    spec = importlib.util.spec_from_loader(RECIPES, loader=None, is_package=True)
    assert spec is not None  # for mypy: a spec without a loader is always made
    package = importlib.util.module_from_spec(spec)
    package.__path__ = folders
    sys.modules[RECIPES] = package


def load_recipe(name: str, *, smoke: bool = False) -> dict[str, Any]:
    """Run the config file's ``get_config(smoke)``: only the project's own files by name
    (`find_recipe`), any other by explicit path."""
    path = find_recipe(name)
    _recipes_package()
    # Named as a module of the recipes package but not registered in sys.modules: two files of
    # the same name (a user's and the repository's) never see each other's module.
    kind = STUDIES if path.parent.name == STUDIES else RECIPES
    spec = importlib.util.spec_from_file_location(f"{kind}.{path.stem}", path)
    assert spec is not None and spec.loader is not None  # for mypy: a .py path has a loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: a recipe must define get_config(smoke: bool = False) -> dict")
    return module.get_config(smoke=smoke)
