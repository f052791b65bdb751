"""podcast_pipeline: daily podcast analytics from Spotify for Creators and OP3 into DuckDB."""

__version__ = "0.1.0"
