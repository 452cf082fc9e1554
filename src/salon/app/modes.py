"""What differs between the homeserver modes: how identities act and where events
come from. ``client``: each identity logs in and runs its own /sync loop;
``appservice``: the appservice's users act through one token and the homeserver
pushes every event to one listener. Everything built on these is the same."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from salon.app.surface import api_secret
from salon.config.models import HomeserverConfig, SalonConfig
from salon.ids import UserId
from salon.matrix.api import MatrixAPI, RequestSettings
from salon.matrix.appservice import AppserviceSource, ListenAddress
from salon.matrix.as_auth import AppserviceAuthenticator, AppserviceIdentity
from salon.matrix.login import Authenticator
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.reachability import Reachability
from salon.matrix.source import IdentitySource
from salon.matrix.sync import ClientSyncSource, SyncSettings
from salon.roster import Roster
from salon.store import Store
from salon.supervisor import Backoff


def authenticator(
    config: SalonConfig,
    session: aiohttp.ClientSession,
    store: Store,
    policy: RetryPolicy,
    reachability: Reachability,
    secrets: Mapping[str, str],
) -> Authenticator:
    """How each identity gets its :class:`MatrixAPI`."""
    hs = config.homeserver
    assert hs is not None
    requests = RequestSettings(policy, hs.request_timeout_s, reachability)
    if hs.mode == "appservice":
        assert hs.appservice is not None
        as_token = api_secret(
            hs.appservice.as_token_env, "homeserver.appservice.as_token_env", secrets
        )
        assert as_token is not None
        return AppserviceAuthenticator(
            hs.url,
            hs.server_name,
            session,
            store.identities,
            AppserviceIdentity(
                as_token, config.router_user_id(hs.server_name), store.appservice_users
            ),
            requests,
        )
    return Authenticator(hs.url, hs.server_name, session, store.identities, requests)


def event_source(
    config: SalonConfig,
    roster: Roster,
    apis: Mapping[UserId, MatrixAPI],
    store: Store,
    auth: Authenticator,
    backoff: Backoff,
    secrets: Mapping[str, str],
) -> IdentitySource:
    """Where inbound events come from."""
    hs = config.homeserver
    assert hs is not None
    if hs.mode == "appservice":
        return appservice_source(hs, roster, apis, store, secrets)
    return ClientSyncSource(
        list(apis.values()),
        store.identities,
        settings=SyncSettings(
            timeout_ms=config.sync.timeout_ms,
            startup_jitter_s=0,  # the jitter was spent before logging in
            timeline_limit=config.sync.timeline_limit,
            page_size=config.sync.backfill_page_size,
            cached_pages=config.sync.backfill_cached_pages,
        ),
        backoff=backoff,
        reauth=auth.reauth,
    )


def appservice_source(
    hs: HomeserverConfig,
    roster: Roster,
    apis: Mapping[UserId, MatrixAPI],
    store: Store,
    secrets: Mapping[str, str],
) -> AppserviceSource:
    """The listener the homeserver pushes transactions to."""
    assert hs.appservice is not None
    hs_token = api_secret(hs.appservice.hs_token_env, "homeserver.appservice.hs_token_env", secrets)
    assert hs_token is not None
    router = roster.router_user_id

    def owns(user_id: str) -> bool:
        return user_id == router or roster.hosted_agent_of(user_id) is not None

    return AppserviceSource(
        hs_token,
        store.appservice_txns,
        router=router,
        owns=owns,
        apis=list(apis.values()),
        listen=ListenAddress(hs.appservice.host, hs.appservice.port, hs.appservice.id),
    )
