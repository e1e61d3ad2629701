"""A thin namespace over `adambnn_larq.deploy`, kept so that ``from converters.lce import
convert_model`` (and ``converters.pytorch``, ``converters.benchmark``) keep working in a
checkout. The code lives in ``adambnn_larq/deploy/``; new code should import it from there."""
