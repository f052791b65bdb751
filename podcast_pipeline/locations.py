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
- ``token_<name>``: the same for the shows read from OP3 only, per OP3 token.

Pools and run-queue limits belong to the instance, so politeness per account and per token
holds across locations. Without a network file there is one location: ``definitions.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
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


def plan(net: Network) -> list[Location]:
    """The network location, then one per account and one per OP3 token of the shows with no
    account, in the file's order."""
    if net.source is None:
        raise ConfigError(NETWORK_FILE_ENV, "is not set, and code locations per account "
                          "split a network file", "Set it to the file that lists the shows "
                          "(README \"Many shows\"); one show needs no workspace but the "
                          "repository's workspace.yaml")
    out = [Location(NETWORK, NETWORK, network_wide=True)]
    for account in net.accounts:
        shows = tuple(s.key for s in net.shows_of_account(account.name))
        if shows:
            out.append(Location(account.name, _attribute("account", account.name), shows))
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


def workspace_yaml(net: Network) -> str:
    """A ``workspace.yaml`` with one code location per entry of :func:`plan`."""
    lines = ["# Written by `podcast-pipeline workspace`: one code location per Spotify account",
             f"# (and OP3 token) of {net.where()}, and one for the network. Write it again",
             "# after adding an account; adding a show to an account needs a reload only.",
             "load_from:"]
    for loc in plan(net):
        lines += ["  - python_module:", f"      module_name: {MODULE}",
                  f"      attribute: {loc.attribute}", f"      location_name: {loc.name}"]
    return "\n".join(lines) + "\n"


@cache
def _definitions(attribute: str) -> Any:
    from podcast_pipeline.code_location import build_definitions

    settings = Settings.load()
    for loc in plan(load_network(settings)):
        if loc.attribute == attribute:
            return build_definitions(settings, loc)
    raise AttributeError(f"{MODULE} has no code location {attribute!r} for "
                         f"{load_network(settings).where()}: run `podcast-pipeline workspace` "
                         "again (an account was renamed or removed?)")


def __getattr__(name: str) -> Any:
    # Dagster loads ``module:attribute``; a dunder is Python asking, not Dagster.
    if name.startswith("__"):
        raise AttributeError(name)
    return _definitions(name)
