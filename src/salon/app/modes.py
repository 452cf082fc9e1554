"""What differs between the homeserver modes: how identities act and where events
come from. ``client``: each identity logs in and runs its own /sync loop;
``appservice``: the appservice's users act through one token and the homeserver
pushes every event to one listener. Everything built on these is the same."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiohttp
import structlog

from salon.app.crypto_key import crypto_settings
from salon.app.surface import api_secret
from salon.config.models import HomeserverConfig, SalonConfig
from salon.gateway.invites import InviteJoiner
from salon.ids import UserId
from salon.matrix.api import MatrixAPI, RequestSettings
from salon.matrix.appservice import AppserviceSource, ListenAddress
from salon.matrix.as_auth import AppserviceAuthenticator, AppserviceIdentity
from salon.matrix.as_catchup import CatchUp
from salon.matrix.crypto import DeviceCrypto
from salon.matrix.crypto.appservice import REQUIREMENTS, attach_appservice_device
from salon.matrix.login import Authenticator
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.reachability import Reachability
from salon.matrix.source import IdentitySource
from salon.matrix.sync import ClientSyncSource, SyncSettings
from salon.pacing import Backstage
from salon.roster import Roster
from salon.store import Store
from salon.supervisor import Backoff

log = structlog.get_logger("salon.app.modes")


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
        as_auth = AppserviceAuthenticator(
            hs.url,
            hs.server_name,
            session,
            store.identities,
            AppserviceIdentity(
                as_token, config.router_user_id(hs.server_name), store.appservice_users
            ),
            requests,
        )
        if config.encryption.enabled:
            as_settings = crypto_settings(config, secrets)
            # What cannot be checked from here is said once: without the transaction
            # extensions, room keys never come and encrypted messages are dropped, counted.
            log.info(
                "crypto.appservice_needs",
                homeserver=hs.url,
                needs=REQUIREMENTS,
                otherwise="encrypted messages wait, then are dropped and counted "
                "(salon_decryption_failures_total)",
            )
            as_auth.on_login = lambda api: attach_appservice_device(api, store.crypto, as_settings)
        return as_auth
    auth = Authenticator(hs.url, hs.server_name, session, store.identities, requests)
    if config.encryption.enabled:
        # Each identity gets its one durable device before its first sync or send.
        settings = crypto_settings(config, secrets)
        auth.on_login = lambda api: DeviceCrypto.attach(api, store.crypto, settings)
    return auth


def listener(
    config: SalonConfig, roster: Roster, store: Store, secrets: Mapping[str, str]
) -> AppserviceSource | None:
    """Appservice mode's listener, made before any identity logs in (it listens
    early: see ``steps.listening_early``); None in client mode."""
    hs = config.homeserver
    assert hs is not None
    if hs.mode != "appservice":
        return None
    return appservice_source(hs, roster, store, secrets)


def event_source(
    config: SalonConfig,
    apis: Mapping[UserId, MatrixAPI],
    store: Store,
    auth: Authenticator,
    backoff: Backoff,
    early: AppserviceSource | None,
) -> IdentitySource:
    """Where inbound events come from: ``early`` (the appservice listener) serving
    the identities logged in, or a /sync loop per identity."""
    if early is not None:
        early.serve(apis.values())
        return early
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
    store: Store,
    secrets: Mapping[str, str],
) -> AppserviceSource:
    """The listener the homeserver pushes transactions to (serving no identity yet)."""
    assert hs.appservice is not None
    hs_token = api_secret(hs.appservice.hs_token_env, "homeserver.appservice.hs_token_env", secrets)
    assert hs_token is not None
    router = roster.router_user_id

    def owns(user_id: str) -> bool:
        return user_id == router or roster.hosted_agent_of(user_id) is not None

    source = AppserviceSource(
        hs_token,
        store.appservice_txns,
        router=router,
        owns=owns,
        apis=[],
        listen=ListenAddress(hs.appservice.host, hs.appservice.port),
    )
    source.appservice_id = hs.appservice.id
    # Events the homeserver never pushed are read back at start and after an outage.
    source.catchup = CatchUp(store.identities, router)
    return source


CATCHUP_RATE_PER_S = 100.0
"""Rooms the catch-up starts reading per second, at most (see lighten_start). Not
lower: a homeserver that holds its pushes for a while after a restart leaves the
catch-up to find the messages that wait for replies."""
CATCHUP_GRACE_S = 2.0
CATCHUP_MAX_DEFER_S = 3.0


def lighten_start(source: IdentitySource, invites: InviteJoiner, busy: Callable[[], bool]) -> None:
    """Appservice mode: the catch-up reads its rooms behind the replies (after a
    restart a read of every room at once held them back): after a short grace, at a
    bounded rate, not while turns run (``busy``) but no more than a few seconds late;
    and an invitation of an identity the listener knows to be in the room is closed
    without a join."""
    if not isinstance(source, AppserviceSource):
        return
    invites.already_in = source.members.joined
    if source.catchup is not None:
        source.catchup.door = Backstage(
            busy,
            rate_per_s=CATCHUP_RATE_PER_S,
            max_defer_s=CATCHUP_MAX_DEFER_S,
            grace_s=CATCHUP_GRACE_S,
        ).turn


def follow_outages(source: IdentitySource, reachability: Reachability) -> None:
    """An appservice source catches up whenever the homeserver answers again."""
    if isinstance(source, AppserviceSource):
        reachability.listeners.append(source.outage)
