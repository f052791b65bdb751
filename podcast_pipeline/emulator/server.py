"""The loopback HTTP server that serves both APIs, plus its control endpoints and stats."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from . import anchor_api, op3_api, spotify_api
from .common import Response, compact
from .data import Dataset, EmulatorConfig
from .faults import APIS, LOGIN_PAGE, FaultEngine, Faults, truncate
from .shows import EmulatedAccount, ShowNetwork

CONTROL = "/_emulator"
NETWORK_FILE_ENV = "PODCAST_PIPELINE_NETWORK_FILE"  # settings.NETWORK_FILE_ENV; kept import-light
OP3_TOKEN_NAME = "main"  # the one OP3 token's name in the request log and the network file
_TOKEN_PARAM = re.compile(r"(?i)([?&](?:token|anchorpw_s)=)[^&#]*")
CLOUDFLARE_PAGE = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                   b"<body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>")


@dataclass(frozen=True)
class RequestRecord:
    """One request as seen by the emulator. Credentials are masked as ``***``."""

    api: str  # "anchor" | "op3" | "spotify" | "other"
    endpoint: str
    method: str
    path_with_query: str
    status: int
    fault: str | None  # latency/rate_limit/error/malformed/expired, the last one applied
    headers: dict[str, str]
    time: datetime  # when it was answered
    # The credential's owner (an account name; the OP3 token's name), never the secret; None
    # when the request carried no known credential. And the show it was answered for.
    account: str | None = None
    show: str | None = None  # the show's web station id
    started: datetime | None = None  # when it arrived (concurrency = overlapping spans)


def mask_path(path: str) -> str:
    return _TOKEN_PARAM.sub(r"\1***", path)


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        low = k.lower()
        if low == "authorization":
            v = re.sub(r"(?i)^(bearer\s+).*$", r"\1***", v) if v.lower().startswith("bearer") else "***"
        elif low == "cookie":
            v = "; ".join(f"{p.split('=', 1)[0].strip()}=***" for p in v.split(";") if p.strip())
        out[k] = v
    return out


class Emulator:
    """Both APIs on one loopback port, in a background thread. Use as a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, shows: int = 1,
                 accounts: int = 1, op3_per_account: bool = False) -> None:
        self.config = config or EmulatorConfig()
        self.network = ShowNetwork(self.config, shows, accounts,
                                   op3_per_account=op3_per_account)
        self.dataset: Dataset = self.network.datasets[0]  # the single-show emulator's show
        self.spotify = spotify_api.SpotifyBackend(self.dataset, self.network)
        self._engine = FaultEngine(faults or Faults())
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=100_000)
        self._counts: dict[str, Counter[Any]] = {}
        self._total = 0
        self.reset_stats()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def listen(self) -> Emulator:
        """Bind the port (``OSError`` if taken) without serving yet: connections queue until
        :meth:`start`. Lets the CLI report a taken port before it detaches."""
        if self._server is None:
            self._server = ThreadingHTTPServer((self._host, self._port), _make_handler(self))
            self._server.daemon_threads = True
        return self

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        self.listen()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="podcast-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:  # shutdown() waits for a serve loop that must run
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Block until Ctrl-C (CLI use)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- public controls -------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        ds = self.dataset
        return {
            "ANCHOR_BASE_URL": self.url + anchor_api.PREFIX,
            "ANCHOR_WEBSTATION_ID": ds.webstation_id,
            "ANCHOR_PW_S": ds.cookie,
            "OP3_BASE_URL": self.url + op3_api.PREFIX,
            "OP3_TOKEN": self.network.op3_token,  # sees every show of a network
            "OP3_SHOW_UUID": ds.show_uuid,
            "OP3_URL_PREFIX": ds.url_prefix + "*",  # a starts-with filter for /hits?url=
        }

    @property
    def graphql_env(self) -> dict[str, str]:
        """The Spotify GraphQL backend's variables (set beside ``env``, they select it)."""
        ds = self.dataset
        return {
            "SPOTIFY_SP_DC": ds.sp_dc,
            "SPOTIFY_SP_KEY": ds.sp_key,
            "SPOTIFY_ACCOUNTS_URL": self.url + spotify_api.ACCOUNTS_PREFIX,
            "SPOTIFY_GRAPHQL_URL": self.url + spotify_api.GRAPHQL_PATH,
            "SPOTIFY_LEGACY_API_URL": self.url + spotify_api.LEGACY_PREFIX,
        }

    @property
    def account_env(self) -> dict[str, str]:
        """Each account's cookies under the names the network file gives them."""
        out: dict[str, str] = {}
        for account in self.network.accounts:
            names = account.env_names()
            out |= {names["sp_dc"]: account.sp_dc, names["sp_key"]: account.sp_key,
                    names["anchor_pw_s"]: account.cookie}
            if account.op3_token:
                out[names["op3_token"]] = account.op3_token
        return out

    @property
    def all_env(self) -> dict[str, str]:
        """Every variable: what ``podcast-pipeline emulator`` prints as export lines (a
        network's accounts too; the single-show variables stay, for show 0, with its URI:
        its account has several shows)."""
        extra = {} if self.network.is_single else {
            "SPOTIFY_SHOW_URI": self.dataset.spotify_show_uri, **self.account_env}
        return {**self.env, **self.graphql_env, **extra}

    def network_yaml(self, backend: str = "graphql") -> str:
        """The network file (PODCAST_PIPELINE_NETWORK_FILE) of the shows served: the names
        of the variables of :attr:`account_env` and OP3_TOKEN, never a secret."""
        import yaml  # PyYAML, pinned; only a network needs it

        net = self.network
        accounts = []
        for account in net.accounts:
            names = account.env_names()
            accounts.append({"name": account.name, "backend": backend,
                             **({"sp_dc_env": names["sp_dc"], "sp_key_env": names["sp_key"]}
                                if backend == "graphql" else
                                {"anchor_pw_s_env": names["anchor_pw_s"]})})
        shows = [{"key": ds.webstation_id, "name": ds.show_title,
                  "account": net.owner(ds).name, "spotify_show_uri": ds.spotify_show_uri,
                  "op3_show_uuid": ds.show_uuid,
                  "op3_token": net.owner(ds).name if net.owner(ds).op3_token else OP3_TOKEN_NAME,
                  "op3_url_prefix": ds.url_prefix + "*"} for ds in net.datasets]
        tokens = [{"name": a.name, "token_env": a.env_names()["op3_token"]}
                  for a in net.accounts if a.op3_token]
        body = yaml.safe_dump({"accounts": accounts,
                               "op3_tokens": tokens or [{"name": OP3_TOKEN_NAME,
                                                         "token_env": "OP3_TOKEN"}],
                               "shows": shows}, sort_keys=False, width=200)
        return (f"# The emulator's network (seed {self.config.seed}): {len(shows)} shows on "
                f"{len(accounts)} accounts.\n# Secrets are not here: each *_env names the "
                "variable that holds one (the emulator's export lines).\n" + body)

    def network_env(self, path: Path, backend: str = "graphql") -> dict[str, str]:
        """Write :meth:`network_yaml` to ``path`` (atomically) and return the variables that
        select it: each account's cookies and PODCAST_PIPELINE_NETWORK_FILE."""
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.network_yaml(backend))
        os.replace(tmp, path)
        return {**self.account_env, NETWORK_FILE_ENV: str(path)}

    def describe(self) -> dict[str, Any]:
        """The accounts and shows served (no secret): GET /_emulator/network."""
        net = self.network
        return {"accounts": [{"name": a.name, "identity": a.identity,
                              "shows": [net.datasets[k].webstation_id for k in a.shows]}
                             for a in net.accounts],
                "shows": [{"key": ds.webstation_id, "name": ds.show_title,
                           "account": net.owner(ds).name, "station_id": ds.station_id,
                           "spotify_show_uri": ds.spotify_show_uri, "op3_show_uuid": ds.show_uuid}
                          for ds in net.datasets]}

    @property
    def faults(self) -> Faults:
        return self._engine.faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults; this reseeds the fault RNG and restarts expiry counting."""
        self._engine.set(faults)

    def expire(self, api: str, account: str | None = None) -> None:
        """The API's credential (or only ``account``'s) now answers 401 / login_required."""
        if account is not None:
            self.network.account(account)  # KeyError names the known ones
        self._engine.expire(api, account)
        if api == "spotify":  # the session ended: its bearers die with it
            self.spotify.revoke_bearers(account)

    def revoke_bearers(self) -> None:
        """Every Spotify bearer now answers 401 (the cookies stay valid): a silent re-login."""
        self.spotify.revoke_bearers()

    def refresh(self, api: str, account: str | None = None) -> None:
        if account is not None:
            self.network.account(account)
        self._engine.refresh(api, account)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset_stats(self) -> None:
        with self._lock:
            self._records.clear()
            self._total = 0
            self._counts = {k: Counter() for k in ("by_api", "by_endpoint", "by_status", "faults",
                                                   "by_account", "by_show")}

    def stats(self) -> dict[str, Any]:
        """``{"requests", "by_api", "by_endpoint", "by_status" (int keys), "faults",
        "by_account", "by_show", "max_concurrent_by_account", "expired_accounts"}``."""
        with self._lock:
            out: dict[str, Any] = {"requests": self._total}
            out.update({k: dict(v) for k, v in self._counts.items()})
        out["max_concurrent_by_account"] = self.max_concurrency()
        out["expired_accounts"] = self._engine.expired_accounts()
        return out

    def max_concurrency(self) -> dict[str, int]:
        """Per account (and OP3 token): the most of its requests in flight at once, from the
        spans of the logged requests (since the last reset)."""
        events: dict[str, list[tuple[datetime, int]]] = {}
        for rec in self.requests:
            if rec.account is not None and rec.started is not None:
                key = f"{rec.api}:{rec.account}" if rec.api == "op3" else rec.account
                events.setdefault(key, []).extend([(rec.started, 1), (rec.time, -1)])
        out = {}
        for key, evs in events.items():
            now = peak = 0
            for _, step in sorted(evs, key=lambda e: (e[0], e[1])):  # an end before a start
                now += step
                peak = max(peak, now)
            out[key] = peak
        return out

    # ---- request pipeline ------------------------------------------------------------
    def _record(self, rec: RequestRecord, faults: list[str]) -> None:
        with self._lock:
            self._records.append(rec)
            self._total += 1
            self._counts["by_api"][rec.api] += 1
            self._counts["by_endpoint"][rec.endpoint] += 1
            self._counts["by_status"][rec.status] += 1
            if rec.account is not None:
                self._counts["by_account"][rec.account] += 1
            if rec.show is not None:
                self._counts["by_show"][rec.show] += 1
            for f in faults:
                self._counts["faults"][f] += 1

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        started = datetime.now(UTC)
        path, _, raw_query = raw_path.partition("?")
        if path.startswith(CONTROL + "/") or path == CONTROL:
            return self._control(method, path[len(CONTROL):], body, raw_query)
        params = parse_qsl(raw_query, keep_blank_values=True)
        faults: list[str] = []
        who: list[str | None] = [None, None]  # [account, show], filled in by the API's handler
        if path.startswith(anchor_api.PREFIX + "/"):
            api, sub = "anchor", path[len(anchor_api.PREFIX):]
            endpoint = anchor_api.endpoint_name(sub, dict(params))
            resp = self._anchor(method, sub, params, headers, endpoint, faults, who)
        elif path.startswith(op3_api.PREFIX + "/"):
            api, sub = "op3", path[len(op3_api.PREFIX):]
            endpoint = op3_api.endpoint_name(sub)
            resp = self._op3(method, sub, params, raw_query, headers, endpoint, faults, who)
        elif path.startswith("/spotify/"):
            api = "spotify"
            endpoint, resp = self._spotify(method, path, dict(params), headers, body, faults, who)
        else:
            api, endpoint = "other", "unknown"
            resp = Response(404, b"Not Found", "text/plain; charset=utf-8")
        self._record(RequestRecord(api, endpoint, method, mask_path(raw_path), resp.status,
                                   faults[-1] if faults else None, mask_headers(headers),
                                   datetime.now(UTC), who[0], who[1], started), faults)
        return resp

    def _pre(self, api: str, endpoint: str, faults: list[str],
             account: str | None = None) -> tuple[bool, bool]:
        """Count the request towards expiry and sleep; returns (expired, faults apply)."""
        expired = self._engine.count_and_check_expired(api, account)
        applies = self._engine.applies(api, endpoint)
        if applies and self._engine.sleep():
            faults.append("latency")
        return expired, applies

    def _post(self, resp: Response, api: str, malformed: str | None, faults: list[str]) -> Response:
        if resp.status != 200 or malformed is None:
            return resp
        faults.append("malformed")
        if malformed == "truncated":
            return Response(200, truncate(resp.body), resp.content_type, resp.headers)
        page = LOGIN_PAGE if api == "anchor" else CLOUDFLARE_PAGE
        return Response(200, page, "text/html; charset=utf-8")

    def _anchor(self, method: str, sub: str, params: list[tuple[str, str]], headers: dict[str, str],
                endpoint: str, faults: list[str], who: list[str | None]) -> Response:
        account = self.network.by_cookie(_cookie(headers.get("Cookie", ""), "anchorpw_s"))
        expired, applies = self._pre("anchor", endpoint, faults, account and account.name)
        if account is None:
            return anchor_api.unauthorized()
        who[0] = account.name
        if expired:
            faults.append("expired")
            return anchor_api.unauthorized()
        ds, foreign = self._show_of(account, anchor_api.show_ref(sub))
        who[1] = ds.webstation_id
        if foreign:
            return anchor_api.not_owner()
        dec = self._engine.draw() if applies else None
        if dec and dec.rate_limit:
            faults.append("rate_limit")
            return anchor_api.rate_limited(self._engine.faults.retry_after)
        if dec and dec.error_status:
            faults.append("error")
            return anchor_api.server_error(dec.error_status)
        resp = anchor_api.handle(ds, method, sub, dict(params))
        return self._post(resp, "anchor", dec.malformed if dec else None, faults)

    def _show_of(self, account: EmulatedAccount,
                 ref: tuple[str, object] | None) -> tuple[Dataset, bool]:
        """The show a request names (else the account's first, which answers an unknown id
        as the single-show emulator does) and whether it is another account's."""
        ds = self.network.find(*ref) if ref else None
        if ds is None:
            return self.network.datasets[account.shows[0]], False
        return ds, self.network.owner(ds) is not account

    def _spotify(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                 body: bytes, faults: list[str], who: list[str | None]) -> tuple[str, Response]:
        sp = self.spotify
        accounts, legacy = spotify_api.ACCOUNTS_PREFIX, spotify_api.LEGACY_PREFIX
        if path == accounts + "/oauth2/v2/auth":
            endpoint = "auth"
        elif path == accounts + "/api/token":
            endpoint = "token"
        elif path == spotify_api.GRAPHQL_PATH:
            endpoint = _operation_name(body)
        elif path.startswith(legacy + "/"):
            endpoint = "legacyOverview"
        else:
            return "unknown", Response(404, b"Not Found", "text/plain; charset=utf-8")
        account = (sp.cookie_account(headers.get("Cookie", "")) if endpoint == "auth" else
                   sp.code_account(body) if endpoint == "token" else
                   sp.bearer_account(headers.get("Authorization", "")))
        name = who[0] = account.name if account else None
        expired, applies = self._pre("spotify", endpoint, faults, name)
        if expired:
            sp.revoke_bearers(name)  # this account's session ended (all, with no account)
        if endpoint == "auth":
            if method != "GET":
                return endpoint, Response(405, b"", "text/plain")
            if expired:
                faults.append("expired")
            return endpoint, sp.auth_page(query, headers.get("Cookie", ""), expired)
        if endpoint == "token":
            if method != "POST":
                return endpoint, Response(405, b"", "text/plain")
            return endpoint, sp.token(body, self.faults.bearer_ttl)
        if account is None or expired:  # no live bearer, or its session just ended
            if expired:
                faults.append("expired")
            return endpoint, spotify_api.unauthorized()
        dec = self._engine.draw() if applies else None
        if dec and dec.rate_limit:
            faults.append("rate_limit")
            return endpoint, anchor_api.rate_limited(self._engine.faults.retry_after)
        if dec and dec.error_status:
            faults.append("error")
            return endpoint, anchor_api.server_error(dec.error_status)
        if endpoint == "legacyOverview":
            m = re.match(r"^/v3/episodes/(\d+)/", path[len(legacy):])
            ds, foreign = self._show_of(account, ("episode", int(m.group(1))) if m else None)
            who[1] = ds.webstation_id
            resp = anchor_api.errors(403, "Forbidden") if foreign else \
                spotify_api.legacy(ds, method, path[len(legacy):])
        elif method != "POST":
            resp = Response(405, b"", "text/plain")
        else:
            rate = self.faults.data_fetching_rate if applies else 0.0

            def geo_fails() -> bool:
                if self._engine.chance(rate):
                    faults.append("data_fetching")
                    return True
                return False

            endpoint, resp = sp.graphql(body, geo_fails, account, who)
        return endpoint, self._post(resp, "spotify", dec.malformed if dec else None, faults)

    def _op3(self, method: str, sub: str, params: list[tuple[str, str]], raw_query: str,
             headers: dict[str, str], endpoint: str, faults: list[str],
             who: list[str | None]) -> Response:
        if method == "OPTIONS":
            return op3_api.options()
        expired, applies = self._pre("op3", endpoint, faults)
        m = re.match(r"(?i)^bearer (.*)$", headers.get("Authorization", ""))
        token = m.group(1) if m else next((v for k, v in params if k == "token"), None)
        if token is None:
            return op3_api.unauthorized()
        known = self.network.op3_tokens.get(token)
        if known is None:
            return op3_api.forbidden()
        who[0], sees = known  # the main token sees every show; an account's, only its own
        ref = op3_api.show_ref(sub, params)
        ds = self._op3_show(ref, None if sees is None else min(sees))
        who[1] = ds.webstation_id
        if sees is not None and ds.show_index not in sees:
            return op3_api.forbidden()  # OP3's answer to a key without access (inferred)
        if expired:
            faults.append("expired")
            return op3_api.expired()
        dec = self._engine.draw() if applies else None
        if dec and dec.rate_limit:
            faults.append("rate_limit")
            return op3_api.slow_down()
        if dec and dec.error_status:
            faults.append("error")
            return op3_api.server_error(dec.error_status)
        resp = op3_api.handle(ds, method, sub, params, raw_query, now=self._now(),
                              redirect_logs_direct=self.config.redirect_logs_direct)
        if endpoint == "showDownloadCounts" and resp.status == 200:
            resp = self._all_show_counts(resp, params, sees)
        return self._post(resp, "op3", dec.malformed if dec else None, faults)

    def _all_show_counts(self, resp: Response, params: list[tuple[str, str]],
                         sees: frozenset[int] | None) -> Response:
        """show-download-counts takes several showUuid: each of the network's shows named
        answers in the one body, as one token's query over its shows does."""
        uuids = dict.fromkeys(v for k, v in params if k == "showUuid")
        others = [ds for u in uuids if (ds := self.network.find("uuid", u)) is not None
                  and ds is not self._op3_show(("uuid", next(iter(uuids))))
                  and (sees is None or ds.show_index in sees)]  # a token's own shows only
        if not others:
            return resp
        body = json.loads(resp.body)
        for ds in others:
            one = op3_api.handle(ds, "GET", "/queries/show-download-counts",
                                 [("showUuid", ds.show_uuid)], f"showUuid={ds.show_uuid}",
                                 now=self._now())
            body["showDownloadCounts"] |= json.loads(one.body)["showDownloadCounts"]
        return op3_api.json_response(body)

    def _op3_show(self, ref: tuple[str, str] | None, default: int | None = None) -> Dataset:
        """The show an OP3 request names (a uuid, guid, feed or episode URL filter); the first
        show otherwise, which answers an unknown one as the single-show emulator does."""
        if ref is not None and ref[0] == "url":
            prefix = ref[1].removesuffix("*")
            found = next((ds for ds in self.network.datasets
                          if prefix.startswith(ds.url_prefix) or ds.url_prefix.startswith(prefix)),
                         None)
        else:
            found = self.network.find(*ref) if ref else None
        return found or self.network.datasets[default or 0]

    def _now(self) -> datetime:
        """Real time of day on the dataset's 'today', so relative OP3 times line up with the data."""
        now = datetime.now(UTC)
        return now.replace(year=self.dataset.today.year, month=self.dataset.today.month,
                           day=self.dataset.today.day)

    def _control(self, method: str, sub: str, body: bytes, raw_query: str = "") -> Response:
        def ok(obj: Any) -> Response:
            return Response(200, compact(obj), "application/json")

        account = dict(parse_qsl(raw_query)).get("account")
        try:
            if sub == "/network" and method == "GET":
                return ok(self.describe())
            if sub in ("/expire", "/refresh") and method == "POST":
                # One account's cookies, both backends' (the OP3 token is the network's).
                if account is None:
                    raise ValueError("name the account: ?account=acct01")
                for api in ("anchor", "spotify"):
                    getattr(self, sub[1:])(api, account)
                return ok({"ok": True, sub[1:]: ["anchor", "spotify"], "account": account})
            if sub == "/stats" and method == "GET":
                st = self.stats()
                st["by_status"] = {str(k): v for k, v in st["by_status"].items()}
                return ok(st)
            if sub == "/faults" and method == "GET":
                return ok(self.faults.to_json())
            if sub == "/faults" and method == "POST":
                self.set_faults(Faults.from_json(json.loads(body or b"{}")))
                return ok(self.faults.to_json())
            if sub == "/revoke-bearers" and method == "POST":
                self.revoke_bearers()
                return ok({"ok": True})
            if sub == "/reset" and method == "POST":
                self.reset_stats()
                return ok({"ok": True})
            m = re.match(r"^/(expire|refresh)/([a-z0-9]+)$", sub)
            if m and method == "POST" and m.group(2) in APIS:
                if account is not None and m.group(2) == "op3":
                    raise ValueError("the OP3 token is the network's, not an account's: "
                                     "expire it without ?account=")
                getattr(self, m.group(1))(m.group(2), account)
                return ok({"ok": True, m.group(1): m.group(2),
                           **({"account": account} if account else {})})
        except (ValueError, TypeError) as e:
            return Response(400, compact({"error": str(e)}), "application/json")
        except KeyError as e:  # an unknown account
            return Response(400, compact({"error": e.args[0]}), "application/json")
        return Response(404, compact({"error": "unknown control endpoint"}), "application/json")


def _operation_name(body: bytes) -> str:
    try:
        name = json.loads(body or b"null").get("operationName")
    except (ValueError, AttributeError):
        return "unknown"
    return name if isinstance(name, str) and name.isidentifier() else "unknown"


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v
    return None


def _make_handler(emu: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "podcast-emulator"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without NODELAY, Nagle plus
            # delayed ACKs add ~40 ms to every keep-alive request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            resp = emu.handle(self.command, self.path, dict(self.headers.items()), body)
            self.send_response(resp.status)
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            for k, v in resp.headers:
                self.send_header(k, v)
            if resp.status != 204:
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD" and resp.status != 204:
                self.wfile.write(resp.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the request log lives in Emulator.requests, with secrets masked

    return Handler


__all__ = ["Emulator", "RequestRecord"]
