"""Spotify for Creators over GraphQL: cookie → bearer login, persisted queries, parsing."""
