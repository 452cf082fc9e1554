"""Every user-facing text, in one catalogue (English, Russian).

Call :func:`text` with a key and keyword arguments; a missing translation
falls back to English, a missing key is a programming error caught by tests.
"""

from __future__ import annotations

from typing import Any

DEFAULT_LOCALE = "en"

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "backend_error": "⚠️ {agent} could not answer: {error}",
        "turn_gave_up": "⚠️ {agent} gave up on this message after {attempts} attempts.",
        "space_topic": "Salon: AI agents on Matrix. Each agent has its own room here.",
        "lobby_name": "Lobby",
        "lobby_topic": "Talk to everyone here; each agent also has its own room in this space.",
        "agent_room_topic": "{label}: {description}",
        "reply_stopped": "⏹ (stopped)",
        "empty_reply": "(no answer)",
        "turn_deadline": "ran out of time after {seconds} s",
        "reply_cut": "… (cut at {chars} characters)",
        # Commands
        # `!help`: a header, then `!name [args] — help` per command (salon.commands.registry)
        "help_header": "Commands:",
        "help_help": "this list",
        "help_agent_list": "list the agents",
        "help_agent_choose": "choose your agent",
        "help_args_agent": "<n|id>",
        "help_new": "start a new chat with your agent",
        "help_args_name_optional": "[name]",
        "help_chats": "your chats",
        "help_rename": "rename this chat",
        "help_args_name": "<name>",
        "help_archive": "archive this chat",
        "help_context": "agent, model and size of this session",
        "help_save": "save this session",
        "help_load": "restore a saved session",
        "help_reset": "clear this session",
        "help_stop": "stop the answer in progress",
        "help_why": "why the last message went where it did",
        "help_delegate": "have this room's agent hand a task to another",
        "help_args_delegate": "<agent> <task>",
        "help_approve": "run a call an agent asks you to approve (reply to its request)",
        "help_args_approve": "[id]",
        "help_deny": "refuse a call an agent asks you to approve",
        "help_args_deny": "[id]",
        "approval_request": (
            "🔐 {agent} wants to run {tool} ({arguments}). {who} may approve: react ✅ to "
            "run it or ❌ to refuse, or reply !approve / !deny. Refused if nobody answers "
            "within {minutes} min. (approval {id})"
        ),
        "approval_who_admin": "An admin",
        "approval_outcome_approved": "✅ Approved by {by}.",
        "approval_outcome_denied": "❌ Refused by {by}.",
        "approval_outcome_timeout": "⌛ Refused: nobody answered in time.",
        "approval_usage": "Reply to an approval request with !approve or !deny, or give its id.",
        "approval_done_approved": "✅ Approved: {tool} runs now.",
        "approval_done_denied": "❌ Refused: {tool} will not run.",
        "approval_not_found": "There is no approval request {ref}.",
        "approval_not_allowed": (
            "Only the person the agent works for here, or an admin, may answer this request."
        ),
        "approval_decided": "That request was already answered ({state}).",
        "help_lang": "change the language",
        "help_args_lang": "<en|ru>",
        "command_admin_only": "Only an admin can use !{command}.",
        "unknown_command": "Unknown command !{command}. Try !help.",
        "agent_list_header": "Agents (choose one with !agent <n|id>):",
        "agent_list_item": "{marker}{n}. {label} ({agent_id}) — {description}",
        "agent_selected_marker": "→ ",
        "agent_selected": "Your agent is now {label}. Start a chat with !new.",
        "agent_selected_and_bound": "Your agent is now {label}, and {label} answers in this room.",
        "agent_choice_out_of_range": "Choose a number from 1 to {max}.",
        "agent_choice_unknown": "There is no agent “{choice}”. See the list with !agent.",
        "agent_choice_empty": "Which agent? Use !agent <n|id>.",
        "new_needs_agent": "Choose an agent first with !agent, then use !new.",
        "new_created": "New chat “{name}” with {label}: {link}",
        "new_failed": "Could not create the chat: {error}",
        "chat_belongs_to": (
            "This chat belongs to {label}. Use !new to start a chat with your selected agent, "
            "or !agent {agent_id} to switch back."
        ),
        "chats_header": "Your chats:",
        "chats_item": "• {name} — {label}: {link}",
        "chats_empty": "No chats yet. Start one with !new.",
        "rename_needs_name": "Give the new name: !rename <name>.",
        "renamed": "Renamed to “{name}”.",
        "rename_not_chat": "Only chats started with !new can be renamed.",
        "archived": "Archived “{name}”. Messages here no longer go to an agent.",
        "archive_not_chat": "Only chats started with !new can be archived.",
        "context_info": (
            "Agent: {label}\nModel: {model}\nMessages: {messages}\nTokens (estimate): ~{tokens}"
        ),
        "context_no_agent": "No agent answers in this room.",
        "saved": "Saved this session as “{name}”.",
        "load_list_header": "Saved sessions (answer with a number):",
        "load_list_item": "{n}. {name} — messages: {messages}",
        "load_empty": "No saved sessions yet. Save one with !save.",
        "load_prompt": "Answer with a number from 1 to {max}.",
        "loaded": "Restored “{name}” (messages: {messages}).",
        "reset_done": "Cleared the session with {label}.",
        "stop_done": "⏹ Stopped answers: {count}.",
        "stop_nothing": "Nothing to stop.",
        "why_decision": "The last message went to {label}: {reason}. {detail}",
        "why_nobody": "The last message went to no agent: {reason}.",
        "why_unknown": "Nothing has been routed in this room yet.",
        "lang_set": "Language set to {locale}.",
        "lang_unknown": "Unknown language “{locale}”. Available: en, ru.",
        "delegation_sent": "{frm} → {to}: {task}",
        "delegation_refs": "(refs: {refs})",
        "delegation_refs_more": "+{count} more",
        "delegation_accepted": "{to} accepted the task from {frm}.",
        "delegation_completed": "{to} finished the task from {frm}.",
        "delegation_failed": "{to} could not do the task from {frm}: {error}",
        "delegation_timeout": "{to} did not finish the task from {frm} in time.",
        "delegation_result_prompt": "The task you gave {to} is done. Its result:\n{result}",
        "delegate_usage": "Usage: !delegate <agent> <task>, in an agent's room.",
        "turns_busy": (
            "⏳ {label} is busy with too many waiting messages; please try again shortly."
        ),
        "attachment_too_large": (
            "📎 {name} is too large ({size} bytes or more; the limit is {limit} bytes), "
            "so {label} did not get it. Send a smaller file, or a link."
        ),
        "attachment_failed": (
            "📎 {name} could not be fetched ({reason}), so {label} did not get it."
        ),
        "reply_file_too_large": (
            "📎 {label} answered with {name} ({size} bytes), which is over the limit of "
            "{limit} bytes, so it was not sent."
        ),
        "reply_file_failed": "📎 {label} answered with {name}, but it could not be sent: {reason}",
        "nobody_notice": (
            "No agent answers here. Mention an agent by name, choose one with !agent "
            "and start a chat with !new, or write in an agent's own room."
        ),
        "space_name_personal": "Salon — {user}",
        "chat_default_name": "Chat {n}",
        "route_reason_mention": "you mentioned it",
        "route_reason_agent_room": "this is its own room",
        "route_reason_chat_room": "this chat is bound to it",
        "route_reason_route": "a configured route matched",
        "route_reason_hook": "a routing hook chose it",
        "route_reason_ai_router": "the AI router chose it",
        "route_reason_lexical": "the message matched its topics",
        "route_reason_sole_agent": "it is the only agent here",
        "route_reason_default": "it is the default agent",
        "route_reason_nobody": "no rule picked an agent",
        "route_reason_hop_limit": "agents had passed it on too many times (hop limit)",
        "route_reason_peer_room": "the room belongs to an agent of another gateway",
        "route_reason_stale_chat": "this chat belongs to another agent than the one you picked",
    },
    "ru": {
        "backend_error": "⚠️ {agent} не смог ответить: {error}",
        "turn_gave_up": "⚠️ {agent} прекратил попытки ответить после {attempts} попыток.",
        "space_topic": "Salon: ИИ-агенты в Matrix. У каждого агента здесь своя комната.",
        "lobby_name": "Лобби",
        "lobby_topic": "Общая комната; у каждого агента есть и своя комната в этом пространстве.",
        "agent_room_topic": "{label}: {description}",
        "reply_stopped": "⏹ (остановлено)",
        "empty_reply": "(нет ответа)",
        "turn_deadline": "не уложился в {seconds} с",
        "reply_cut": "… (обрезано на {chars} символах)",
        # Commands
        "help_header": "Команды:",
        "help_help": "этот список",
        "help_agent_list": "список агентов",
        "help_agent_choose": "выбрать агента",
        "help_args_agent": "<номер|id>",
        "help_new": "новый чат с вашим агентом",
        "help_args_name_optional": "[название]",
        "help_chats": "ваши чаты",
        "help_rename": "переименовать этот чат",
        "help_args_name": "<название>",
        "help_archive": "архивировать этот чат",
        "help_context": "агент, модель и объём этой сессии",
        "help_save": "сохранить эту сессию",
        "help_load": "восстановить сохранённую сессию",
        "help_reset": "очистить эту сессию",
        "help_stop": "остановить текущий ответ",
        "help_why": "почему последнее сообщение ушло именно туда",
        "help_delegate": "агент этой комнаты передаст задачу другому",
        "help_args_delegate": "<агент> <задача>",
        "help_approve": "разрешить вызов, о котором спрашивает агент (ответом на запрос)",
        "help_args_approve": "[id]",
        "help_deny": "запретить вызов, о котором спрашивает агент",
        "help_args_deny": "[id]",
        "approval_request": (
            "🔐 {agent} хочет вызвать {tool} ({arguments}). Разрешить может {who}: "
            "поставьте ✅, чтобы разрешить, или ❌, чтобы запретить, либо ответьте "
            "!approve / !deny. Без ответа за {minutes} мин. — запрет. (запрос {id})"
        ),
        "approval_who_admin": "администратор",
        "approval_outcome_approved": "✅ Разрешил(а) {by}.",
        "approval_outcome_denied": "❌ Запретил(а) {by}.",
        "approval_outcome_timeout": "⌛ Запрещено: никто не ответил вовремя.",
        "approval_usage": (
            "Ответьте на запрос агента командой !approve или !deny, или укажите его id."
        ),
        "approval_done_approved": "✅ Разрешено: {tool} выполняется.",
        "approval_done_denied": "❌ Запрещено: {tool} не будет выполнен.",
        "approval_not_found": "Запроса {ref} нет.",
        "approval_not_allowed": (
            "Ответить на этот запрос может только тот, для кого работает агент, или администратор."
        ),
        "approval_decided": "На этот запрос уже ответили ({state}).",
        "help_lang": "сменить язык",
        "help_args_lang": "<en|ru>",
        "command_admin_only": "Команда !{command} доступна только администратору.",
        "unknown_command": "Неизвестная команда !{command}. Список команд: !help.",
        "agent_list_header": "Агенты (выбор: !agent <номер|id>):",
        "agent_list_item": "{marker}{n}. {label} ({agent_id}) — {description}",
        "agent_selected_marker": "→ ",
        "agent_selected": "Ваш агент теперь {label}. Новый чат: !new.",
        "agent_selected_and_bound": "Ваш агент теперь {label}, и в этой комнате отвечает {label}.",
        "agent_choice_out_of_range": "Выберите номер от 1 до {max}.",
        "agent_choice_unknown": "Агента «{choice}» нет. Список агентов: !agent.",
        "agent_choice_empty": "Какого агента выбрать? Используйте !agent <номер|id>.",
        "new_needs_agent": "Сначала выберите агента командой !agent, затем используйте !new.",
        "new_created": "Новый чат «{name}» с {label}: {link}",
        "new_failed": "Не удалось создать чат: {error}",
        "chat_belongs_to": (
            "Этот чат принадлежит агенту {label}. Наберите !new, чтобы начать чат "
            "с выбранным агентом, или !agent {agent_id}, чтобы вернуться к нему."
        ),
        "chats_header": "Ваши чаты:",
        "chats_item": "• {name} — {label}: {link}",
        "chats_empty": "Чатов пока нет. Начните новый: !new.",
        "rename_needs_name": "Укажите новое название: !rename <название>.",
        "renamed": "Чат переименован в «{name}».",
        "rename_not_chat": "Переименовать можно только чат, созданный через !new.",
        "archived": "Чат «{name}» архивирован. Сообщения отсюда больше не уходят агенту.",
        "archive_not_chat": "Архивировать можно только чат, созданный через !new.",
        "context_info": (
            "Агент: {label}\nМодель: {model}\nСообщений: {messages}\nТокенов (оценка): ~{tokens}"
        ),
        "context_no_agent": "В этой комнате не отвечает ни один агент.",
        "saved": "Сессия сохранена как «{name}».",
        "load_list_header": "Сохранённые сессии (ответьте номером):",
        "load_list_item": "{n}. {name} — сообщений: {messages}",
        "load_empty": "Сохранённых сессий пока нет. Сохранить: !save.",
        "load_prompt": "Ответьте номером от 1 до {max}.",
        "loaded": "Сессия «{name}» восстановлена (сообщений: {messages}).",
        "reset_done": "Сессия с {label} очищена.",
        "stop_done": "⏹ Остановлено ответов: {count}.",
        "stop_nothing": "Нечего останавливать.",
        "why_decision": "Последнее сообщение ушло к {label}: {reason}. {detail}",
        "why_nobody": "Последнее сообщение не ушло ни одному агенту: {reason}.",
        "why_unknown": "В этой комнате ещё ничего не маршрутизировалось.",
        "lang_set": "Язык изменён: {locale}.",
        "lang_unknown": "Неизвестный язык «{locale}». Доступны: en, ru.",
        "delegation_sent": "{frm} → {to}: {task}",
        "delegation_refs": "(ссылки: {refs})",
        "delegation_refs_more": "и ещё {count}",
        "delegation_accepted": "{to} взял задачу от {frm}.",
        "delegation_completed": "{to} выполнил задачу от {frm}.",
        "delegation_failed": "{to} не смог выполнить задачу от {frm}: {error}",
        "delegation_timeout": "{to} не успел выполнить задачу от {frm} в срок.",
        "delegation_result_prompt": "Задача для {to} выполнена. Результат:\n{result}",
        "delegate_usage": "Использование: !delegate <агент> <задача>, в комнате агента.",
        "turns_busy": (
            "⏳ {label} занят: слишком много сообщений ждёт ответа; попробуйте чуть позже."
        ),
        "attachment_too_large": (
            "📎 Файл {name} слишком большой ({size} байт или больше; предел — {limit} байт), "
            "поэтому {label} его не получил. Пришлите файл поменьше или ссылку."
        ),
        "attachment_failed": (
            "📎 Файл {name} не удалось получить ({reason}), {label} его не получил."
        ),
        "reply_file_too_large": (
            "📎 {label} ответил файлом {name} ({size} байт), это больше предела в "
            "{limit} байт, поэтому файл не отправлен."
        ),
        "reply_file_failed": (
            "📎 {label} ответил файлом {name}, но его не удалось отправить: {reason}"
        ),
        "nobody_notice": (
            "Здесь не отвечает ни один агент. Упомяните агента по имени, выберите агента "
            "командой !agent и начните чат через !new или напишите в комнату агента."
        ),
        "space_name_personal": "Salon — {user}",
        "chat_default_name": "Чат {n}",
        "route_reason_mention": "вы его упомянули",
        "route_reason_agent_room": "это его собственная комната",
        "route_reason_chat_room": "этот чат привязан к нему",
        "route_reason_route": "сработал настроенный маршрут",
        "route_reason_hook": "его выбрал хук маршрутизации",
        "route_reason_ai_router": "его выбрал ИИ-маршрутизатор",
        "route_reason_lexical": "сообщение подошло к его темам",
        "route_reason_sole_agent": "это единственный агент здесь",
        "route_reason_default": "это агент по умолчанию",
        "route_reason_nobody": "ни одно правило не выбрало агента",
        "route_reason_hop_limit": "агенты передавали его друг другу слишком много раз",
        "route_reason_peer_room": "комната принадлежит агенту другого шлюза",
        "route_reason_stale_chat": "этот чат принадлежит не тому агенту, которого вы выбрали",
    },
}


# Errors of the HTTP API: code → (HTTP status, message). The code is the stable part
# (clients match on it); the message is for people.
API_ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "a valid 'Authorization: Bearer <token>' header is required"),
    "not_found": (404, "no such route: {path}"),
    "link_invalid": (403, "this attachment link is invalid or has expired"),
    "agent_not_found": (404, "no agent {agent!r} (known: {known})"),
    "model_not_found": (404, "the model {model!r} does not exist (known: {known})"),
    "room_not_found": (404, "no room {room!r}"),
    "approval_not_found": (404, "no approval request {id!r}"),
    "approval_decided": (409, "the approval request {id!r} was already answered ({state})"),
    "approvals_off": (409, "approvals are not available in this gateway"),
    "invalid_request": (400, "{detail}"),
    "no_operator": (409, "no operator user is configured to send messages as"),
    "backend_error": (502, "{agent} could not answer: {error}"),
    "timeout": (504, "no answer within {seconds} s"),
    "homeserver_unavailable": (503, "the homeserver is not reachable: {detail}"),
    "internal_error": (500, "internal error ({kind}); see the gateway log"),
    "no_route": (404, "the routing chain picked no agent for this message ({reason})"),
    "operator_not_in_room": (403, "the operator {user} cannot post in {room}: {detail}"),
    "room_forbidden": (403, "the gateway cannot read {room}: {detail}"),
    "matrix_error": (502, "the homeserver refused: {detail}"),
    "bad_host": (
        421,
        "this server does not answer to the Host {host!r}; add the name to api.allowed_hosts",
    ),
    "unsupported_media_type": (
        415,
        "the body must be sent with 'Content-Type: application/json' (got {given!r})",
    ),
    "bad_json": (400, "the body is not JSON this API reads: {detail}"),
    "body_too_large": (413, "the body is larger than {limit} bytes"),
    "cross_site": (403, "requests from another site's page are refused ({detail})"),
    "csrf_failed": (403, "the 'X-CSRF-Token' header is missing or wrong; reload the page"),
    "login_failed": (401, "that login link was already used or has expired, or the token is wrong"),
    "not_acceptable": (406, "this is an event stream: send 'Accept: text/event-stream'"),
}


def api_error(code: str, /, **values: Any) -> tuple[int, str]:
    """The HTTP status and message of API error ``code``."""
    status, template = API_ERRORS[code]
    return status, template.format(**values)


def text(key: str, locale: str = DEFAULT_LOCALE, /, **values: Any) -> str:
    """The text for ``key`` in ``locale`` with ``values`` filled in."""
    template = CATALOGUE.get(locale, {}).get(key) or CATALOGUE[DEFAULT_LOCALE][key]
    return template.format(**values)
