"""Spotify for Creators (formerly Anchor) analytics client. No Dagster here."""

from podcast_pipeline.anchor.client import AnchorClient

__all__ = ["AnchorClient"]
