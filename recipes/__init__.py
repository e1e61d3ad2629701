"""Training recipes: plain config files, one a recipe (``adambnn train NAME``)."""
