"""A network as several code locations: one per Spotify account, one for the network.

Every process that runs a step loads its code location's definitions, and one location of
500 shows is ~17,500 assets: about 100 s per process on 2 cores (README "Running a network
across machines"). Split by account, a run or a Celery task loads only its account's shows.
``podcast-pipeline workspace`` writes the ``workspace.yaml`` that lists them; each entry is an
attribute of this module, built when Dagster first asks for it:

- ``network``: the ``network/shows`` asset, the analytics models and the report over every
  show (their inputs are the other locations' assets), the credential alert (it watches every
  location), the probe and the pools' sensor;
- ``account_<name>``: that account's shows' API assets, their checks, and a daily job and
  schedule over them;
- ``token_<name>``: the same for the shows read from OP3 only, per OP3 token;
- ``accounts_<k>_<i>``: with ``--accounts-per-location k``, the i-th group of k accounts in
  the file's order (fewer code servers, each loading more shows per run).

Pools and run-queue limits belong to the instance, so politeness per account and per token
holds across locations. Without a network file there is one location: ``definitions.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from podcast_pipeline.errors import ConfigError
from podcast_pipeline.network import Network, load_network
from podcast_pipeline.settings import NETWORK_FILE_ENV, Settings

MODULE = "podcast_pipeline.locations"
NETWORK = "network"


@dataclass(frozen=True)
class Location:
    name: str  # its location_name in the workspace
    attribute: str  # podcast_pipeline.locations.<attribute>
    shows: tuple[str, ...] = ()  # the keys of the shows whose API assets it holds
    network_wide: bool = False  # the shows table, the models, the report and the sensors


def plan(net: Network, accounts_per_location: int = 1) -> list[Location]:
    """The network location, then one per account (or per ``accounts_per_location`` accounts,
    in the file's order) and one per OP3 token of the shows with no account."""
    if net.source is None:
        raise ConfigError(NETWORK_FILE_ENV, "is not set, and code locations per account "
                          "split a network file", "Set it to the file that lists the shows "
                          "(README \"Many shows\"); one show needs no workspace but the "
                          "repository's workspace.yaml")
    if accounts_per_location < 1:
        raise ConfigError("--accounts-per-location", f"is {accounts_per_location}",
                          "Give 1 or more")
    out = [Location(NETWORK, NETWORK, network_wide=True)]
    accounts = [a.name for a in net.accounts if net.shows_of_account(a.name)]
    k = accounts_per_location
    for i in range(0, len(accounts), k):
        group = accounts[i:i + k]
        shows = tuple(s.key for name in group for s in net.shows_of_account(name))
        if k == 1:
            out.append(Location(group[0], _attribute("account", group[0]), shows))
        else:  # the attribute says how the accounts were grouped: a run worker regroups
            out.append(Location(f"{group[0]}-to-{group[-1]}" if len(group) > 1 else group[0],
                                f"accounts_{k}_{i // k + 1}", shows))
    for token in net.op3_tokens:
        shows = tuple(s.key for s in net.shows_of_token(token.name) if not s.account)
        if shows:
            out.append(Location(f"op3-{token.name}", _attribute("token", token.name), shows))
    seen: dict[str, str] = {}
    for loc in out:  # names are [a-z0-9_-]: "a-b" and "a_b" would share an attribute
        if loc.attribute in seen:
            raise ConfigError(f"{NETWORK_FILE_ENV} ({net.where()})",
                              f"names {seen[loc.attribute]!r} and {loc.name!r}, which share "
                              f"the code location attribute {loc.attribute!r}", "Rename one")
        seen[loc.attribute] = loc.name
    return out


def _attribute(kind: str, name: str) -> str:
    return f"{kind}_{re.sub(r'[^a-z0-9_]', '_', name)}"


def workspace_yaml(net: Network, accounts_per_location: int = 1) -> str:
    """A ``workspace.yaml`` with one code location per entry of :func:`plan`."""
    per = "account" if accounts_per_location == 1 else f"{accounts_per_location} accounts"
    lines = [f"# Written by `podcast-pipeline workspace`: one code location per {per}",
             f"# (and OP3 token) of {net.where()}, and one for the network. Write it again",
             "# after adding an account; adding a show to an account needs a reload only.",
             "load_from:"]
    for loc in plan(net, accounts_per_location):
        lines += ["  - python_module:", f"      module_name: {MODULE}",
                  f"      attribute: {loc.attribute}", f"      location_name: {loc.name}"]
    return "\n".join(lines) + "\n"


# What plan() names its locations; "per": the accounts per location of a grouped one.
_ATTRIBUTE = re.compile(rf"{NETWORK}|(account|token)_[a-z0-9_]+|accounts_(?P<per>\d+)_\d+")


def show_locations(net: Network) -> dict[str, str]:
    """Each show's key → the attribute of its account's (or token's) location."""
    return {key: loc.attribute for loc in plan(net) for key in loc.shows}


@lru_cache(maxsize=8)  # a long-lived Celery worker may serve every location in turn
def _definitions(attribute: str) -> Any:
    from podcast_pipeline.code_location import build_definitions

    settings = Settings.load()
    grouped = _ATTRIBUTE.fullmatch(attribute)
    per = grouped["per"] if grouped else None
    for loc in plan(load_network(settings), int(per) if per else 1):
        if loc.attribute == attribute:
            return build_definitions(settings, loc)
    raise AttributeError(f"{MODULE} has no code location {attribute!r} for "
                         f"{load_network(settings).where()}: run `podcast-pipeline workspace` "
                         "again (an account was renamed or removed?)")


def __getattr__(name: str) -> Any:
    # Dagster loads ``module:attribute``; any other name (a dunder, a tool's probe) is not a
    # location, and must not read the network file.
    if not _ATTRIBUTE.fullmatch(name):
        raise AttributeError(f"module {MODULE!r} has no attribute {name!r}")
    return _definitions(name)
