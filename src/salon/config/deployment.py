"""How the gateway runs: homeserver, names, timing, limits and storage."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from salon.config.base import (
    ConfigModel,
    ConfigProblems,
    HttpUrl,
    IdPattern,
    Localpart,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ServerName,
    UserIdStr,
)


class Listening(ConfigModel):
    """A section with a ``listen: host:port`` address (the API, the appservice)."""

    listen: str

    @property
    def host(self) -> str:
        """The address to listen on (brackets of an IPv6 literal removed)."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to listen on (0: any free port)."""
        return int(self.listen.rpartition(":")[2])


class AppserviceConfig(Listening):
    """The gateway as an application service (``homeserver.mode: appservice``): the
    homeserver pushes events to ``listen`` and every agent acts through one token.

    Both tokens come from the environment (``salon appservice register`` makes them);
    the router's localpart is the appservice's ``sender_localpart``.
    """

    id: Localpart = "salon"
    as_token_env: str = "SALON_AS_TOKEN"
    hs_token_env: str = "SALON_HS_TOKEN"
    listen: str = "127.0.0.1:9010"
    # Where the homeserver reaches the listener (default: http://<listen>).
    url: HttpUrl | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"must be host:port, e.g. 127.0.0.1:9010, got {value!r}")
        return value

    @property
    def public_url(self) -> str:
        """The URL the homeserver sends transactions to."""
        return str(self.url) if self.url else f"http://{self.listen}"


class HomeserverConfig(ConfigModel):
    """Where the gateway's Matrix users live."""

    url: HttpUrl
    server_name: ServerName
    # client: each identity logs in and syncs; appservice: one registered application
    # service receives every event and acts as each agent (see docs/appservice.md).
    mode: Literal["client", "appservice"] = "client"
    appservice: AppserviceConfig | None = None
    registration_shared_secret: Annotated[str | None, Field(repr=False)] = None
    registration_shared_secret_env: str | None = None
    # Each request's bound (a /sync long-poll: its timeout plus this); aiohttp's own is 300 s.
    request_timeout_s: PositiveFloat = 30
    # While the homeserver is down, how often one probe asks whether it answers again.
    probe_interval_s: PositiveFloat = 0.5

    @model_validator(mode="after")
    def _one_secret_source(self) -> HomeserverConfig:
        if self.registration_shared_secret and self.registration_shared_secret_env:
            msg = "set registration_shared_secret or registration_shared_secret_env, not both"
            raise ConfigProblems([(("registration_shared_secret_env",), msg)])
        if self.mode == "appservice" and self.appservice is None:
            # The defaults are complete: mode alone selects them.
            object.__setattr__(self, "appservice", AppserviceConfig())
        return self


class IdentityCredentials(ConfigModel):
    """Explicit Matrix credentials, for ``salon run`` without a shared secret."""

    user_id: UserIdStr | None = None
    access_token_env: str | None = None
    password_env: str | None = None
    device_id: str | None = None


class SpaceConfig(ConfigModel):
    """The deployment's Matrix Space (``#<alias>:<server>``)."""

    alias: Localpart = "salon"
    name: str = "Salon"
    topic: str | None = None
    # An agent that joined another agent's room (to delegate, or mentioned) leaves it
    # after this long with nothing to do there (null: at the next start).
    visit_idle_s: PositiveFloat | None = 600


class NamingConfig(ConfigModel):
    """Patterns for Matrix names derived from agent ids (``{id}`` is replaced)."""

    agent_localpart: IdPattern = "salon_{id}"
    agent_room_alias: IdPattern = "salon-{id}"
    lobby_alias: Localpart = "salon-lobby"


class HeartbeatConfig(ConfigModel):
    """How often agents refresh their state event, and when they count as offline."""

    interval_s: PositiveFloat = 30
    ttl_s: PositiveFloat = 90

    @model_validator(mode="after")
    def _ttl_after_interval(self) -> HeartbeatConfig:
        if self.ttl_s <= self.interval_s:
            raise ConfigProblems([(("ttl_s",), "must be greater than interval_s")])
        return self


class SyncConfig(ConfigModel):
    """Sync loop timing and supervision backoff."""

    timeout_ms: Annotated[int, Field(ge=0)] = 30000
    startup_jitter_s: NonNegativeFloat = 2.0
    backoff_initial_s: PositiveFloat = 5
    backoff_max_s: PositiveFloat = 60
    timeline_limit: Annotated[int, Field(ge=1, le=1000)] = 100  # events a room per /sync
    # A gap (a limited timeline) is filled this many events a /messages request, to
    # the end; the first backfill_cached_pages pages are kept, older ones read twice.
    backfill_page_size: Annotated[int, Field(ge=1, le=1000)] = 100
    backfill_cached_pages: Annotated[int, Field(ge=0)] = 20

    @model_validator(mode="after")
    def _max_after_initial(self) -> SyncConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigProblems([(("backoff_max_s",), "must be at least backoff_initial_s")])
        return self


class RateLimitConfig(ConfigModel):
    """Salon's own policy for HTTP 429 / M_LIMIT_EXCEEDED."""

    max_retries: Annotated[int, Field(ge=0)] = 8
    max_wait_s: PositiveFloat = 60
    default_wait_s: NonNegativeFloat = 1.0


class RepliesConfig(ConfigModel):
    """How streamed replies become Matrix messages and edits."""

    edit_interval_s: NonNegativeFloat = 1.0  # at most one edit per interval
    max_edits: PositiveInt = 20  # per reply, the final edit included
    max_message_chars: Annotated[int, Field(ge=500, le=30000)] = 16000  # longer replies split
    max_attempts: PositiveInt = 3  # per turn, across crashes and restarts
    # A typing notice only when the first chunk is slower than this: fast replies skip it.
    typing_after_s: NonNegativeFloat = 0.3


class TurnsConfig(ConfigModel):
    """Bounds on agent turns, so one sender or one runaway model cannot stall the rest."""

    concurrency: PositiveInt = 32  # turns running at once in this process
    per_agent: PositiveInt = 8  # of those, for any one agent
    per_sender: PositiveInt = 4  # of those, started by any one sender
    # Turns that may wait for a slot, per sender and per agent; past that a message
    # gets a "busy, try again" answer instead of a place at the end of a long line.
    max_waiting_per_sender: PositiveInt = 32
    max_waiting_per_agent: PositiveInt = 128
    deadline_s: PositiveFloat = 600  # wall-clock limit on one turn's backend run
    max_reply_chars: Annotated[int, Field(ge=100)] = 20000  # a longer reply is cut here


class DispatchConfig(ConfigModel):
    """How admitted events are handled: each room's in order, rooms side by side, so
    one slow room (a routing model call, a join, an outage wait) holds up no other."""

    max_rooms: Annotated[int, Field(ge=1, le=4096)] = 32  # rooms handled at once
    # Events of one room read ahead into its queue (the rest wait in the inbox).
    per_room: Annotated[int, Field(ge=1, le=1000)] = 16


class AttachmentsConfig(ConfigModel):
    """Files people send (``m.image``, ``m.file``, ``m.audio``, ``m.video``): each is
    downloaded into the agent's home dir before its turn and handed to the backend."""

    # A bigger file is not downloaded (nor kept in part): the sender is told so.
    max_bytes: Annotated[int, Field(ge=1)] = 20 * 1024 * 1024
    # ``http`` backends get a file up to this size inline (base64), a bigger one as a
    # link to the API server (when one is configured); 0: always a link.
    inline_max_bytes: Annotated[int, Field(ge=0)] = 256 * 1024
    # How long such a link works.
    link_ttl_s: Annotated[float, Field(ge=10, le=86400)] = 600


class ClusterConfig(ConfigModel):
    """Several gateway processes on one PostgreSQL store and one homeserver: each
    claims what it handles for ``lease_s`` seconds and extends its claims while it
    lives; a dead process's claims are taken over once they run out."""

    lease_s: Annotated[float, Field(ge=1, le=600)] = 10
    # This process's owner id; a stable one resumes its own claims at once after a
    # restart. Unique per process! Default: per process life (SQLite: "local").
    instance: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class EncryptionConfig(ConfigModel):
    """End-to-end encryption (both modes): each identity's device keys live in the
    store, pickled with a key read from the secret named by ``pickle_key_env`` or,
    without one, from ``<data_dir>/crypto.key`` (made owner-only on first start)."""

    enabled: bool = True
    pickle_key_env: str | None = None
    # An encrypted event whose room key has not come by then is dropped (logged, counted).
    undecryptable_wait_s: PositiveFloat = 600
    # Identities whose device account stays in memory (those used last); the others'
    # are read back from the store when a room key comes or goes out.
    resident_accounts: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    # Which rooms Salon creates itself are created encrypted: none; `new` (the `!new`
    # chats); all (chats, agent rooms and the lobby). Spaces never are. Rooms that
    # exist already stay as they are (encryption cannot be turned off in a room).
    rooms: Literal["none", "new", "all"] = "new"

    def encrypts(self, room: Literal["chat", "shared"]) -> bool:
        """Whether a room Salon creates is created encrypted: a `!new` chat, or a
        shared room (an agent's own room, the lobby). Never with encryption off."""
        if not self.enabled or self.rooms == "none":
            return False
        return self.rooms == "all" or room == "chat"


class ShutdownConfig(ConfigModel):
    """How the gateway stops on SIGTERM/SIGINT: it takes no new turns, lets the
    running ones finish for up to ``drain_s`` seconds (0: none), then stops; a
    turn cut off at the deadline resumes on the next start."""

    drain_s: Annotated[float, Field(ge=0, le=3600)] = 20


class StoreConfig(ConfigModel):
    """Where durable state lives, and how long finished work is kept."""

    # sqlite:///<path> (embedded, the default) or postgresql://user@host:port/dbname
    # (needs the `postgres` extra; give the password in PGPASSWORD, not in the file).
    url: str = "sqlite:///salon-data/salon.db"
    # PostgreSQL only: the most connections the gateway keeps open to the database.
    pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    # Finished rows (handled events, closed turns, routing decisions, ended delegations,
    # cron runs, invitations, session messages) older than this many days are deleted;
    # open work never is. None keeps everything.
    retention_days: PositiveFloat | None = 30
    # The newest messages each session keeps (None: all); a turn reads at most 400.
    max_session_messages: Annotated[int | None, Field(ge=2)] = 400

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            if len(value.split("://", 1)[1]) == 0:
                raise ValueError("a postgresql:// URL needs at least a host or a database")
            return value
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError(
                "must be a sqlite:///<path> or postgresql://user@host/dbname URL,"
                f" got {value.split('://', 1)[0]!r}://…"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is an embedded SQLite file (else a PostgreSQL server)."""
        return self.url.startswith("sqlite:///")

    @property
    def sqlite_path(self) -> str:
        """The database file path (``:memory:`` for an in-memory database)."""
        return self.url.removeprefix("sqlite:///")


class ApiConfig(Listening):
    """The gateway's HTTP server: admin API, OpenAI-compatible API, metrics, health.

    Off unless configured. Every route but ``/healthz`` needs ``Authorization:
    Bearer <token>``: the value of the variable ``token_env`` names, or (``token_env:
    null``) a random token made at start and written to ``<data_dir>/api.json``.
    Requests must name an allowed ``Host`` (the listen address and loopback names on
    the listening port, plus ``allowed_hosts``), which stops DNS rebinding.
    """

    listen: str = "127.0.0.1:8765"  # port 0: any free port
    # A taken port: try the next ones, up to this many ports in all (`salon up`: 100).
    port_tries: Annotated[int, Field(ge=1, le=1000)] = 1
    token_env: str | None = "SALON_API_TOKEN"
    # More names clients may use in ``Host`` (a reverse proxy's, this machine's):
    # ``name`` (any port) or ``name:port``; IPv6 literals in brackets.
    allowed_hosts: list[str] = Field(default_factory=list)
    # The user the admin API sends messages as (`salon up` fills it in): full user id
    # and the variable holding its access token. Without one, sending is refused.
    operator_user_id: str | None = None
    operator_token_env: str | None = None
    # Every agent reachable as an A2A agent at `/a2a/<id>` (an agent's `a2a:` overrides).
    a2a: bool = False

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"must be host:port, e.g. 127.0.0.1:8765, got {value!r}")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        names = []
        for entry in value:
            name = entry.strip().lower()
            if not name or any(c in name for c in "/@ \t") or "://" in name:
                raise ValueError(f"a host name or name:port, e.g. salon.example.com, got {entry!r}")
            names.append(name)
        return names
