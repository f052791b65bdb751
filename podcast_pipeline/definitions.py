"""The project's code location (workspace.yaml, ``dagster dev``, ``-m podcast_pipeline.definitions``):
every show of the network in one ``Definitions``, built from the environment when it loads.
A network split into a code location per account loads ``locations.py`` instead.
"""

from podcast_pipeline.code_location import build_definitions, build_executor

__all__ = ["build_definitions", "build_executor", "defs"]

defs = build_definitions()
