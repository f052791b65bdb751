"""The network's shows as Dagster objects: per-show assets and the shows table.

A network of one (no ``PODCAST_PIPELINE_NETWORK_FILE``) keeps today's asset keys
(``anchor/plays``) and groups; its pools are ``spotify_default`` and ``op3_default``
(``politeness.py``). A network file gives each show
its own assets from the one factory (``assets.build_assets``): keys prefixed by the show key
(``<show>/anchor/plays``), a group ``show_<key>``, tags naming the show and its account or
token, and its account's and token's pools (``politeness.py``, as for the network of one).
Partitions stay days: 730 per asset for 2 years, however many shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import dagster as dg
import pandas as pd

from podcast_pipeline import network as net_mod
from podcast_pipeline import warehouse
from podcast_pipeline.analytics.models import NETWORK_SHOWS_COLUMNS, network_shows_ddl
from podcast_pipeline.anchor import assets as anchor_assets
from podcast_pipeline.assets import ACCOUNT_TAG, SHOW_TAG, Scope, asset_key, build_assets
from podcast_pipeline.network import Network
from podcast_pipeline.op3 import assets as op3_assets
from podcast_pipeline.spotify import assets as spotify_assets
from podcast_pipeline.tables import Table

SHOWS_KEY = dg.AssetKey(["network", "shows"])
SHOWS_TABLE = "network.shows"
SHOWS_COLUMNS = {  # the shows dimension: one row per show of the file
    "show_id": "The show's key in the network file (the rows' show_id of its Spotify tables).",
    "name": "The show's name from the network file.",
    "spotify_account": "The Spotify for Creators account it is read with (NULL: OP3 only).",
    "spotify_show_uri": "spotify:show:… (GraphQL backend).",
    "webstation_id": "Its Anchor web station id.",
    "op3_show_uuid": "Its OP3 show uuid (the show_id of its op3.* rows; NULL: Spotify only).",
    "op3_token": "The OP3 token it is read with.",
}


def is_network(net: Network) -> bool:
    """True when a file lists the shows: then every asset key carries its show's key."""
    return net.source is not None


def _show_sources(net: Network, show: net_mod.Show) -> Iterator[tuple[object, list, Scope]]:
    """(source, endpoints, scope) of each API the show is read from."""
    if show.account:
        account = net.account(show.account)
        scope = Scope(show.key, show.name, account.name)
        yield anchor_assets.SOURCE, anchor_assets.ENDPOINTS, scope
        if account.backend == "graphql":  # spotify.*: the GraphQL backend's metrics only
            yield spotify_assets.SOURCE, spotify_assets.ENDPOINTS, scope
    if show.op3_show_uuid and show.op3_token:
        yield op3_assets.SOURCE, op3_assets.ENDPOINTS, Scope(show.key, show.name,
                                                            show.op3_token)


def source_assets(net: Network, partitions: dg.DailyPartitionsDefinition,
                  shows_table: bool = True) -> list[dg.AssetsDefinition]:
    """Every API asset of the network (the network of one: exactly today's), and with a
    network file the ``network/shows`` asset unless ``shows_table`` is False."""
    if not is_network(net):
        return [*anchor_assets.build_anchor_assets(partitions),
                *spotify_assets.build_spotify_assets(partitions),
                *op3_assets.build_op3_assets(partitions)]
    out: list[dg.AssetsDefinition] = []
    for show in net.shows:
        for source, endpoints, scope in _show_sources(net, show):
            out += build_assets(source, endpoints, partitions, scope)  # type: ignore[arg-type]
    return [*out, *([shows_asset] if shows_table else [])]


def show_keys(net: Network, show: net_mod.Show) -> list[dg.AssetKey]:
    """The show's API assets, in table order."""
    return [asset_key(ep.table, show.key)
            for _, endpoints, _ in _show_sources(net, show) for ep in endpoints]


def row_show_id(show: net_mod.Show, table: Table) -> str:
    """The ``show_id`` of the show's rows in ``table``: its OP3 uuid in op3.*, else its key."""
    if table.schema == "op3":
        return show.op3_show_uuid or show.key
    return show.key


def table_keys(net: Network, table: Table) -> list[dg.AssetKey]:
    """The assets that write ``table``: one per show that has it (network of one: one)."""
    if not is_network(net):
        return [asset_key(table)]
    return list(_keys_by_table(net).get((table.schema, table.name), ()))


@lru_cache(maxsize=4)
def _keys_by_table(net: Network) -> dict[tuple[str, str], tuple[dg.AssetKey, ...]]:
    """Every show's keys by table, in show order: the models ask once per table and input,
    which walking every show's keys each time made quadratic in the shows."""
    out: dict[tuple[str, str], list[dg.AssetKey]] = {}
    for show in net.shows:
        for k in show_keys(net, show):
            out.setdefault((k.path[1], k.path[2]), []).append(k)
    return {t: tuple(keys) for t, keys in out.items()}


def credential_keys(net: Network, api: str, credential: str) -> list[dg.AssetKey]:
    """The assets read with one account (``api`` anchor) or OP3 token (``api`` op3)."""
    shows = net.shows_of_account(credential) if api == "anchor" else \
        net.shows_of_token(credential)
    schemas = {"anchor", "spotify"} if api == "anchor" else {"op3"}
    return [k for s in shows for k in show_keys(net, s) if k.path[1] in schemas]


def shows_frame(net: Network) -> pd.DataFrame:
    return pd.DataFrame([{
        "show_id": s.key, "name": s.name, "spotify_account": s.account,
        "spotify_show_uri": s.spotify_show_uri, "webstation_id": s.webstation_id,
        "op3_show_uuid": s.op3_show_uuid, "op3_token": s.op3_token} for s in net.shows],
        columns=list(SHOWS_COLUMNS))


assert tuple(SHOWS_COLUMNS) == NETWORK_SHOWS_COLUMNS


@dg.asset(
    key=SHOWS_KEY,
    group_name="network",
    description="The network's shows (from the network file): one row per show with its name, "
                "account and OP3 token; the analytics models take each show's name from it.",
    kinds={"duckdb"},
    metadata={"dagster/table_name": SHOWS_TABLE,
              "dagster/column_schema": dg.TableSchema(columns=[
                  dg.TableColumn(c, "VARCHAR", description=d) for c, d in SHOWS_COLUMNS.items()])},
    required_resource_keys={"warehouse", "anchor"},
)
def shows_asset(context) -> dg.MaterializeResult:  # annotation omitted: checked at runtime
    net = context.resources.anchor.network()
    frame = shows_frame(net)
    with context.resources.warehouse.writer(on_wait=context.log.info) as con:

        def replace() -> None:  # one transaction, again whole after a DuckLake conflict
            con.execute(network_shows_ddl())
            con.execute("BEGIN")
            con.execute(f"DELETE FROM {SHOWS_TABLE}")
            con.execute(f"INSERT INTO {SHOWS_TABLE} SELECT * FROM network_shows_frame")
            con.execute("COMMIT")

        con.register("network_shows_frame", frame)
        try:
            warehouse.retry_conflicts(con, SHOWS_TABLE, replace)
        finally:
            con.unregister("network_shows_frame")
    return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(len(frame)),
                                          "source": net.where()})


__all__ = ["ACCOUNT_TAG", "SHOWS_KEY", "SHOW_TAG", "credential_keys", "is_network",
           "row_show_id", "show_keys", "source_assets", "table_keys"]
