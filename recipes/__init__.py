"""Training recipes: Python files that run when loaded, one a recipe (``adambnn train NAME``).

A name finds only the files of this folder; any other recipe is given by its path.
"""
