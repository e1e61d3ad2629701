"""adambnn_larq.recipe_files: a study says what it is (``KIND = "study"``), read without
running the file; bare names resolve only in the checkout (`repository`)."""

from pathlib import Path

import pytest

from adambnn_larq import config, recipe_files
from adambnn_larq.errors import RecipeNotFoundError

ROOT = Path(__file__).resolve().parents[1]


def _checkout(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_study_declares_itself_and_the_file_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    study = tmp_path / "s.py"
    study.write_text(f'open({str(marker)!r}, "w").close()\nKIND = "study"\n')
    assert recipe_files.file_kind(study) == "study"
    assert not marker.exists()
    # The keys a study's dict has are no longer guessed at: without KIND it is a recipe.
    looks_like = tmp_path / "r.py"
    looks_like.write_text('def get_config(smoke=False):\n    return {"datasets": 1, "runs": 2}\n')
    assert recipe_files.file_kind(looks_like) == "recipe"
    # Only a module-level constant counts, not one inside a function.
    nested = tmp_path / "n.py"
    nested.write_text('def f():\n    KIND = "study"\n')
    assert recipe_files.file_kind(nested) == "recipe"
    assert recipe_files.file_kind(ROOT / "studies" / "paper_study.py") == "study"
    assert recipe_files.file_kind(ROOT / "recipes" / "adambnn_mnist.py") == "recipe"


def test_the_list_of_recipes_leaves_out_studies(tmp_path, monkeypatch):
    checkout = _checkout(
        tmp_path,
        {
            "recipes/plain.py": "def get_config(smoke=False):\n    return {}\n",
            "recipes/a_study.py": 'KIND = "study"\n',
            "recipes/common.py": "",
        },
    )
    monkeypatch.setenv(recipe_files.CHECKOUT_VARIABLE, str(checkout))
    with pytest.raises(RecipeNotFoundError, match=r"available: plain$"):
        recipe_files.find_recipe("missing")


def test_the_checkout_variable_points_bare_names_at_another_checkout(tmp_path, monkeypatch):
    checkout = _checkout(
        tmp_path / "checkout",
        {"recipes/mine.py": "def get_config(smoke=False):\n    return {'smoke': smoke}\n"},
    )
    with pytest.raises(RecipeNotFoundError):
        recipe_files.find_recipe("mine")
    monkeypatch.setenv(recipe_files.CHECKOUT_VARIABLE, str(checkout))
    assert recipe_files.find_recipe("mine") == checkout.resolve() / "recipes" / "mine.py"
    assert recipe_files.load_recipe("mine", smoke=True) == {"smoke": True}


def test_an_install_outside_a_checkout_says_how_to_find_the_recipes(tmp_path, monkeypatch):
    monkeypatch.setenv(recipe_files.CHECKOUT_VARIABLE, str(tmp_path))
    with pytest.raises(RecipeNotFoundError, match="set ADAMBNN_CHECKOUT to a checkout"):
        recipe_files.find_recipe("adambnn_mnist")


def test_config_still_exports_the_moved_names():
    # TODO (issue 23): goes with the re-exports in adambnn_larq/config.py.
    assert config.load_recipe is recipe_files.load_recipe
    assert config.find_recipe is recipe_files.find_recipe
