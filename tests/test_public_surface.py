"""The public surface others build on, pinned: plugin authors (backends, routing hooks,
tools), peers speaking the delegation protocol, and the layers above each module.

Each module's public names are described (classes with their fields and method
signatures, functions with their signatures, constants with their values) and
compared with the pin below; an accidental change fails with a diff. When a change
is meant, update the pin: ``python -m tests.test_public_surface`` prints it afresh.
"""

# The pins below are one line per name or signature, however long: a diff shows it whole.
# ruff: noqa: E501

from __future__ import annotations

import ast
import dataclasses
import difflib
import enum
import inspect
import sys
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

# module: the names pinned there (None: all its public names)
SURFACE: dict[str, tuple[str, ...] | None] = {
    "salon.agents.backend": None,
    "salon.agents.context": None,
    "salon.agents.tools": None,
    "salon.agents.approval": None,
    "salon.agents.profile": ("AgentProfile",),
    "salon.routing.hooks": None,
    "salon.routing.context": ("AgentInfo", "Binding", "MessageContext"),
    "salon.coordination.protocol": None,
    "salon.ids": None,
    "salon.matrix.api": ("MatrixAPI",),
    "salon.turns.spec": ("TurnKind", "TurnSpec"),
    "salon._exceptions": None,
}

_MEMBER_DUNDERS = ("__init__", "__call__")


def _public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, else what the module itself binds at top level (not its imports)."""
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    names: set[str] = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    loggers = {n for n in names if type(getattr(module, n)).__module__.startswith("structlog")}
    return sorted(n for n in names - loggers if not n.startswith("_"))


class _Annotation(str):
    """An annotation as written (they are strings here), shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _signature(fn: Any) -> str:
    sig = inspect.signature(fn)
    params = [
        p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str) else p
        for p in sig.parameters.values()
    ]
    ret = sig.return_annotation
    sig = sig.replace(
        parameters=params, return_annotation=_Annotation(ret) if isinstance(ret, str) else ret
    )
    prefix = "async " if inspect.iscoroutinefunction(fn) else ""
    return f"{prefix}def{sig}"


def _members(name: str, cls: type) -> list[str]:
    generated = dataclasses.is_dataclass(cls) or _is_model(cls) or _is_protocol(cls)
    lines = []
    for member, value in sorted(vars(cls).items()):
        if member.startswith("_") and member not in _MEMBER_DUNDERS:
            continue
        if member in _MEMBER_DUNDERS and generated:
            continue  # made from the fields (or by Protocol)
        if isinstance(value, property):
            lines.append(f"{name}.{member}: property {_signature(value.fget)}")
        elif isinstance(value, classmethod | staticmethod):
            kind = type(value).__name__
            lines.append(f"{name}.{member}: {kind} {_signature(value.__func__)}")
        elif inspect.isfunction(value):
            lines.append(f"{name}.{member}: {_signature(value)}")
    return lines


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


def _is_model(cls: type) -> bool:
    return issubclass(cls, BaseModel)


def _describe_class(name: str, cls: type) -> list[str]:
    bases = ", ".join(b.__name__ for b in cls.__bases__)
    if issubclass(cls, enum.Enum):
        members = ", ".join(f"{m.name}={m.value!r}" for m in cls)
        return [f"{name}: enum({bases}) {members}"]
    if dataclasses.is_dataclass(cls):
        frozen = cls.__dataclass_params__.frozen
        head = f"{name}: dataclass{'(frozen)' if frozen else ''}"
        fields = [f"{name}.{f.name}: {f.type}" for f in dataclasses.fields(cls)]
    elif _is_model(cls):
        head = f"{name}: model({bases})"
        notes = {f: i.serialization_alias for f, i in cls.model_fields.items()}
        fields = [
            f"{name}.{f}: {cls.__annotations__[f]}" + (f" (as {notes[f]!r})" if notes[f] else "")
            for f in cls.model_fields
        ]
    else:
        kind = "protocol" if _is_protocol(cls) else "class"
        head, fields = f"{name}: {kind}({bases})", []
    return [head, *fields, *_members(name, cls)]


def _describe(name: str, value: Any) -> list[str]:
    if isinstance(value, type):
        return _describe_class(name, value)
    if isinstance(value, typing.NewType):
        return [f"{name}: NewType({value.__supertype__.__name__})"]
    if inspect.isfunction(value):
        return [f"{name}: {_signature(value)}"]
    if isinstance(value, str | int | float | bool):
        return [f"{name} = {value!r}"]
    if isinstance(value, frozenset | set):
        return [f"{name} = {type(value).__name__}({sorted(map(str, value))})"]
    if typing.get_origin(value) is typing.Annotated:  # metadata by kind: reprs vary
        kinds = ", ".join(type(m).__name__ for m in value.__metadata__)
        return [f"{name} = Annotated[{inspect.formatannotation(value.__origin__)}, {kinds}]"]
    if typing.get_origin(value) is not None:
        return [f"{name} = {value!r}"]  # a type alias
    return [f"{name}: {type(value).__module__}.{type(value).__qualname__}"]


def surface(module_name: str) -> list[str]:
    """The described public surface of ``module_name`` (as pinned in SURFACE)."""
    module = __import__(module_name, fromlist=["_"])
    names = SURFACE[module_name] or _public_names(module)
    return [line for name in names for line in _describe(name, getattr(module, name))]


@pytest.mark.parametrize("module_name", list(SURFACE))
def test_public_surface_is_as_pinned(module_name: str) -> None:
    pinned = PINNED[module_name].strip().splitlines()
    now = surface(module_name)
    if now != pinned:
        diff = "\n".join(difflib.unified_diff(pinned, now, "pinned", "now", lineterm=""))
        pytest.fail(f"the public surface of {module_name} changed:\n{diff}", pytrace=False)


def test_every_pinned_module_is_checked() -> None:
    assert set(PINNED) == set(SURFACE)


if __name__ == "__main__":  # print the pins afresh
    sys.stdout.write("PINNED: dict[str, str] = {\n")
    for module_name in SURFACE:
        # Escaped: the pins are plain (not raw) string literals.
        body = "\n".join(surface(module_name)).replace("\\", "\\\\")
        sys.stdout.write(f'    "{module_name}": """\n{body}\n""",\n')
    sys.stdout.write("}\n")


PINNED: dict[str, str] = {
    "salon.agents.backend": """
Backend: protocol(Protocol)
Backend.stream: def(self, request: TurnRequest) -> AsyncIterator[str]
ChatMessage: dataclass(frozen)
ChatMessage.role: Role
ChatMessage.content: str
Role = typing.Literal['system', 'user', 'assistant']
TurnRequest: dataclass(frozen)
TurnRequest.agent_id: AgentId
TurnRequest.sender: str
TurnRequest.text: str
TurnRequest.session_key: str
TurnRequest.chat_id: str
TurnRequest.persona: str | None
TurnRequest.history: tuple[ChatMessage, ...]
TurnRequest.attachments: tuple[Attachment, ...]
TurnRequest.metadata: Mapping[str, Any]
TurnRequest.for_user: str | None
TurnRequest.messages: def(self) -> list[ChatMessage]
""",
    "salon.agents.context": """
Lend = collections.abc.Callable[[], contextlib.AbstractAsyncContextManager[None]]
agent_context: def(profile: AgentProfile) -> Iterator[AgentProfile]
current_agent: def() -> AgentProfile
current_delegator: def() -> Delegator | None
delegator_context: def(delegator: Delegator | None) -> Iterator[Delegator | None]
lending_context: def(lend: Lend | None) -> Iterator[None]
waiting_on_others: def() -> AsyncIterator[None]
""",
    "salon.agents.tools": """
DELEGATE_TOOL_NAME = 'delegate'
DelegationOutcome: dataclass(frozen)
DelegationOutcome.ok: bool
DelegationOutcome.text: str
Delegator: protocol(Protocol)
Delegator.delegate: async def(self, agent: str, task: str, context: str | None = None) -> DelegationOutcome
Delegator.targets: def(self) -> Sequence[tuple[str, str]]
call_delegate_tool: async def(delegator: Delegator, name: str, arguments: str | Mapping[str, Any] | None, *, targets: Sequence[tuple[str, str]] | None = None) -> DelegationOutcome
delegate_tool_schema: def(targets: Sequence[tuple[str, str]]) -> dict[str, Any]
parse_delegate_arguments: def(arguments: str | Mapping[str, Any] | None, targets: Sequence[tuple[str, str]]) -> tuple[str, str, str | None] | DelegationOutcome
""",
    "salon.agents.approval": """
Approved: dataclass(frozen)
Approved.by: str | None
Approver: protocol(Protocol)
Approver.approve: async def(self, call: ToolCall) -> Decision
ApprovingDelegator: class(object)
ApprovingDelegator.__init__: def(self, inner: Delegator) -> None
ApprovingDelegator.delegate: async def(self, agent: str, task: str, context: str | None = None) -> DelegationOutcome
ApprovingDelegator.targets: def(self) -> Sequence[tuple[str, str]]
Decision = salon.agents.approval.Approved | salon.agents.approval.Denied
Denied: dataclass(frozen)
Denied.reason: str
Denied.tool_result: def(self, call: ToolCall) -> str
ToolCall: dataclass(frozen)
ToolCall.tool: str
ToolCall.arguments: Mapping[str, Any]
approve: async def(call: ToolCall) -> Decision
approver_context: def(approver: Approver | None) -> Iterator[Approver | None]
needs_approval: def(patterns: Iterable[str], tool: str) -> bool
""",
    "salon.agents.profile": """
AgentProfile: dataclass(frozen)
AgentProfile.agent_id: AgentId
AgentProfile.label: str
AgentProfile.description: str
AgentProfile.home: Path
AgentProfile.config_persona: str | None
AgentProfile.context_tokens: int
AgentProfile.skill_set: SkillSet
AgentProfile.ensure_home: def(self) -> None
AgentProfile.persona: def(self) -> str | None
AgentProfile.soul: def(self) -> str | None
""",
    "salon.routing.hooks": """
NamedHook: dataclass(frozen)
NamedHook.name: str
NamedHook.fn: SelectAgentHook
SelectAgentHook = collections.abc.Callable[[salon.routing.context.MessageContext, tuple[salon.roster.Member, ...]], 'str | Awaitable[str | None] | None']
ask_hook: async def(hook: SelectAgentHook, ctx: MessageContext, agents: tuple[AgentInfo, ...], *, timeout_s: float, log: Any = None) -> str | None
hook_name: def(hook: SelectAgentHook) -> str
load_hook: def(entry: str, *, key: str = 'select_agent') -> NamedHook
""",
    "salon.routing.context": """
AgentInfo: dataclass(frozen)
AgentInfo.agent_id: AgentId
AgentInfo.user_id: UserId
AgentInfo.label: str
AgentInfo.localpart: str
AgentInfo.description: str
AgentInfo.room_alias: str
AgentInfo.kind: MemberKind
AgentInfo.hosted: property def(self) -> bool
Binding: dataclass(frozen)
Binding.agent_id: str
Binding.kind: Literal['agent', 'chat']
MessageContext: dataclass(frozen)
MessageContext.room_id: str
MessageContext.sender: str
MessageContext.body: str
MessageContext.room_aliases: tuple[str, ...]
MessageContext.thread_root: str | None
MessageContext.formatted_body: str | None
MessageContext.mentioned_user_ids: tuple[str, ...]
MessageContext.agents_in_room: frozenset[str]
MessageContext.binding: Binding | None
MessageContext.sender_agent: str | None
MessageContext.platform: str
MessageContext.hop: int
MessageContext.selected_agent: str | None
MessageContext.server: property def(self) -> str
""",
    "salon.coordination.protocol": """
AGENT_PATTERN = '^[a-z0-9][a-z0-9_-]{0,31}$'
AgentName = Annotated[str, FieldInfo]
DELEGATION_INVALID: prometheus_client.metrics.Counter
DelegationId = Annotated[str, FieldInfo]
DelegationRequest: model(BaseModel)
DelegationRequest.v: Version
DelegationRequest.id: DelegationId
DelegationRequest.from_: AgentName (as 'from')
DelegationRequest.to: AgentName
DelegationRequest.task: str
DelegationRequest.context: str | None
DelegationRequest.parent: DelegationId | None
DelegationRequest.root: DelegationId
DelegationRequest.chain: list[AgentName]
DelegationRequest.hop: int
DelegationRequest.deadline_ts: int
DelegationRequest.refs: list[WorkRef] | None
DelegationRequest.for_user: MatrixUser | None
DelegationState: enum(StrEnum) ACCEPTED='accepted', PROGRESS='progress', COMPLETED='completed', FAILED='failed', REJECTED='rejected'
DelegationStatus: model(BaseModel)
DelegationStatus.v: Version
DelegationStatus.id: DelegationId
DelegationStatus.state: DelegationState
DelegationStatus.result: str | None
DelegationStatus.error: str | None
DelegationStatus.text: str | None
ID_PATTERN = '^[A-Za-z0-9._:-]{1,100}$'
MAX_CHAIN = 16
MAX_CONTEXT = 50000
MAX_ERROR = 2000
MAX_RESULT = 100000
MAX_TASK = 20000
MAX_TEXT = 2000
MatrixUser = Annotated[str, FieldInfo]
REQUEST = 'com.salon.delegation.request'
STATUS = 'com.salon.delegation.status'
TERMINAL = frozenset(['completed', 'failed', 'rejected'])
USER_PATTERN = '^@[^:\\\\s]+:\\\\S+$'
Version = Annotated[Literal[1], BeforeValidator]
check_request: def(req: DelegationRequest, *, receiver: str, hop_limit: int, now_ms: int) -> str | None
new_delegation_id: def() -> str
new_request: def(from_: str, to: str, task: str, *, deadline_ts: int, context: str | None = None, parent: DelegationRequest | None = None, id: str | None = None, for_user: str | None = None) -> DelegationRequest
parse_request: def(content: object) -> DelegationRequest | None
parse_status: def(content: object) -> DelegationStatus | None
request_content: def(req: DelegationRequest) -> dict[str, Any]
status_content: def(st: DelegationStatus) -> dict[str, Any]
""",
    "salon.ids": """
AgentId: NewType(str)
EventId: NewType(str)
RoomAlias: NewType(str)
RoomId: NewType(str)
UserId: NewType(str)
localpart_of_user: def(user_id: UserId | str) -> str
server_of_user: def(user_id: UserId | str) -> str
""",
    "salon.matrix.api": """
MatrixAPI: class(object)
MatrixAPI.__init__: def(self, base_url: str, user_id: UserId, access_token: str, *, session: aiohttp.ClientSession, requests: RequestSettings | None = None, as_user_id: UserId | None = None) -> None
MatrixAPI.access_token: property def(self) -> str
MatrixAPI.act_as_device: def(self, device_id: str) -> None
MatrixAPI.claim_keys: async def(self, devices: Mapping[str, Sequence[str]]) -> JSON
MatrixAPI.create_device: async def(self, device_id: str, display_name: str) -> None
MatrixAPI.create_filter: async def(self, definition: JSON) -> str
MatrixAPI.create_room: async def(self, *, alias_localpart: str | None = None, name: str | None = None, topic: str | None = None, invite: Sequence[UserId] = (), initial_state: Sequence[JSON] = (), creation_content: JSON | None = None, power_level_override: JSON | None = None, preset: str = 'private_chat') -> RoomId
MatrixAPI.device_id: async def(self) -> str | None
MatrixAPI.get_state: async def(self, room_id: RoomId) -> list[JSON]
MatrixAPI.get_state_event: async def(self, room_id: RoomId, event_type: str, state_key: str = '') -> JSON | None
MatrixAPI.has_device: async def(self, device_id: str) -> bool
MatrixAPI.invite: async def(self, room_id: RoomId, user_id: UserId) -> None
MatrixAPI.join: async def(self, room: RoomId | RoomAlias, via: Sequence[str] = ()) -> RoomId
MatrixAPI.joined_members: async def(self, room_id: RoomId) -> list[UserId]
MatrixAPI.joined_rooms: async def(self) -> list[RoomId]
MatrixAPI.leave: async def(self, room_id: RoomId) -> None
MatrixAPI.login_device: async def(self, device_id: str, display_name: str) -> None
MatrixAPI.memberships: async def(self, room_id: RoomId) -> dict[UserId, str]
MatrixAPI.messages: async def(self, room_id: RoomId, *, limit: int = 20, direction: str = 'b', since: str | None = None) -> JSON
MatrixAPI.mute_notifications: async def(self) -> None
MatrixAPI.ping_appservice: async def(self, appservice_id: str) -> None
MatrixAPI.query_keys: async def(self, users: Sequence[str]) -> JSON
MatrixAPI.raw_request_parts: def(self) -> tuple[aiohttp.ClientSession, str, dict[str, str], JSON]
MatrixAPI.resolve_alias: async def(self, alias: RoomAlias) -> tuple[RoomId, list[str]]
MatrixAPI.send_event: async def(self, room_id: RoomId, event_type: str, content: JSON, *, txn_id: str) -> EventId
MatrixAPI.send_state: async def(self, room_id: RoomId, event_type: str, content: JSON, state_key: str = '') -> EventId
MatrixAPI.send_to_device: async def(self, event_type: str, messages: JSON, *, txn_id: str) -> None
MatrixAPI.set_access_token: def(self, token: str) -> None
MatrixAPI.set_displayname: async def(self, name: str) -> None
MatrixAPI.set_typing: async def(self, room_id: RoomId, typing: bool, timeout_ms: int = 30000) -> None
MatrixAPI.sync: async def(self, since: str | None, *, timeout_ms: int, filter_id: str | None = None) -> JSON
MatrixAPI.upload_keys: async def(self, body: JSON) -> dict[str, int]
MatrixAPI.upload_signatures: async def(self, signed: JSON) -> JSON
MatrixAPI.upload_signing_keys: async def(self, body: JSON) -> None
MatrixAPI.whoami: async def(self) -> UserId
""",
    "salon.turns.spec": """
TurnKind: enum(StrEnum) MESSAGE='message', TASK='task', REPORT='report', API='api', CRON='cron'
TurnSpec: dataclass(frozen)
TurnSpec.turn_id: str
TurnSpec.agent_id: AgentId
TurnSpec.kind: TurnKind
TurnSpec.room_id: RoomId
TurnSpec.sender: str
TurnSpec.text: str
TurnSpec.session_key: str
TurnSpec.reply_to: ReplyTo
TurnSpec.delegation_id: str | None
TurnSpec.deadline_ts: int | None
TurnSpec.stateless: bool
TurnSpec.history: tuple[tuple[str, str], ...]
TurnSpec.slot_sender: str | None
TurnSpec.for_user: str | None
TurnSpec.attachments: tuple[Attachment, ...]
TurnSpec.from_json: classmethod def(cls, raw: str) -> TurnSpec
TurnSpec.key: property def(self) -> tuple[str, AgentId]
TurnSpec.to_json: def(self) -> str
""",
    "salon._exceptions": """
AuthError: class(MatrixError)
BackendError: class(SalonError)
ConfigError: class(SalonError)
ConfigError.__init__: def(self, message: str, *, path: str | None = None) -> None
DevServerError: class(SalonError)
ForbiddenError: class(MatrixRequestError)
MatrixConnectionError: class(MatrixError)
MatrixError: class(SalonError)
MatrixRequestError: class(MatrixError)
MatrixRequestError.__init__: def(self, message: str, *, http_status: int = 0, errcode: str | None = None) -> None
MatrixResponseError: class(MatrixError)
NotFoundError: class(MatrixRequestError)
RateLimitedError: class(MatrixRequestError)
RateLimitedError.__init__: def(self, message: str, *, retry_after_s: float | None = None) -> None
RoomInUseError: class(MatrixRequestError)
SalonError: class(Exception)
StoreError: class(SalonError)
StoreError.__init__: def(self, message: str, *, transient: bool = True) -> None
UnknownTokenError: class(MatrixRequestError)
UserInUseError: class(MatrixRequestError)
is_transient: def(error: BaseException) -> bool
""",
}
