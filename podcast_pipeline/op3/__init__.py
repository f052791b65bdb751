"""OP3 (Open Podcast Prefix Project) API client. No Dagster here."""

from podcast_pipeline.op3.client import Op3Client

__all__ = ["Op3Client"]
