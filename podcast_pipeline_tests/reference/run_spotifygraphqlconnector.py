"""Runs inside a venv with spotifygraphqlconnector 0.5.3 (not a project dependency).

Points the reference client's URL constants at the emulator (SPOTIFY_*_URL from the
environment), then runs the scenario named in argv[1] and prints one JSON line of results.
"""

from __future__ import annotations

import json
import os
import sys

from spotifygraphqlconnector import __main__ as cli
from spotifygraphqlconnector import connector as c


def point_at_emulator() -> None:
    accounts = os.environ["SPOTIFY_ACCOUNTS_URL"]
    c.AUTH_URL = accounts + "/oauth2/v2/auth"
    c.TOKEN_URL = accounts + "/api/token"
    c.GRAPHQL_URL = os.environ["SPOTIFY_GRAPHQL_URL"]
    c.ANCHOR_LEGACY_API_URL = os.environ["SPOTIFY_LEGACY_API_URL"]


def connector() -> c.SpotifyGraphQLConnector:
    return c.SpotifyGraphQLConnector(os.environ["SPOTIFY_SP_DC"], os.environ["SPOTIFY_SP_KEY"])


def main(scenario: str) -> dict[str, object]:
    point_at_emulator()
    if scenario == "cli":  # the package's own CLI: every call it makes, results to files
        try:
            cli.main()
        except SystemExit as exc:
            return {"exit": exc.code}
        return {"exit": 0}
    conn = connector()
    if scenario == "dead_cookie":
        try:
            conn.get_shows_for_user()
        except c.CredentialsExpired as exc:
            first = type(exc).__name__
        try:  # poisoned: a second call raises at once
            conn.get_user_metadata()
        except c.CredentialsExpired as exc:
            return {"first": first, "second": type(exc).__name__}
        return {"first": first, "second": None}
    if scenario == "relogin":
        before = conn.get_shows_for_user()["showsForUser"]["shows"][0]["uri"]
        print("READY", flush=True)
        sys.stdin.readline()  # the test revokes every bearer, then says go
        after = conn.get_show_top_episodes()["showByShowUri"]["topEpisodes"]
        return {"show": before, "episodes": len(after["analyticsValue"]["analyticsValue"]["episodes"])}
    if scenario == "unknown_hash":
        c.OPERATION_HASHES["getShowTopEpisodes"] = "0" * 64
        try:
            conn.get_show_top_episodes()
        except c.GraphQLResponseError as exc:
            return {"error": type(exc).__name__, "operation": exc.operation_name,
                    "errors": exc.errors}
        return {"error": None}
    if scenario == "geo_failure":
        region = conn.get_show_geo_stats(result_geo="GEO_REGION", country="DE")
        return {"region": region["showByShowUri"]["showPlaysAndDownloadsByGeo"]}
    raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1])), flush=True)
