"""The public schemas a row of an imported file can follow, by name, and how each becomes a record.

``detect_schema`` names the schema of a row from its keys; ``convert_row`` turns a row of a named schema
into messages (and, for preference data, the chosen and rejected answers); ``OasstTrees`` gathers the
messages of OASST-style trees, which only make conversations once the whole file is read.

The schemas:

- ``messages`` (also called ``openai``): ``messages`` as ``{role, content}`` with roles system, user,
  assistant and tool; an assistant turn's ``tool_calls`` and a turn's ``name`` are kept (below).
- ``alpaca``: ``instruction``, optional ``input``, ``output``.
- ``dolly``: ``instruction``, ``context``, ``response``, ``category`` (Databricks Dolly 15k); the user turn
  is the instruction then the context; ``category`` stays in meta.
- ``sharegpt``: ``conversations`` of ``{from, value}``; ``from`` is human/user, gpt/assistant, system,
  ``function_call`` (an assistant tool call, its value the JSON ``{name, arguments}``) or ``observation``
  (the tool's answer, a ``tool`` turn).
- ``prompt_completion``: ``prompt`` and ``completion``, text or lists of messages (trl's shapes).
- ``preference``: ``prompt``/``chosen``/``rejected`` (trl's explicit prompt, text or messages), ``chosen``/
  ``rejected`` alone (trl's implicit prompt: two whole conversations, the shared beginning is the prompt), or
  ShareGPT ``conversations`` with ``chosen``/``rejected`` turns (LLaMA-Factory's ``dpo_en_demo.json``).
  These make preference records: the prompt in ``messages``, the two answers in ``chosen``/``rejected``.
- ``oasst``: one message per row, ``message_id``, ``parent_id``, ``message_tree_id``, ``role`` prompter or
  assistant, ``text``, ``rank`` (OpenAssistant's oasst1/oasst2 rows), or one tree per row as OpenAssistant
  exports them (``message_tree_id`` and the root message in ``prompt``, each reply in ``replies``). Each tree
  becomes ONE conversation:
  its best-ranked path, from the root prompt following the reply with the lowest ``rank`` (an unranked reply
  after the ranked ones, in file order) down to the last assistant reply; deleted messages are left out.

Content given as a list of parts (``[{"type": "text", "text": ...}]``, or ``value`` in LLaMA-Factory's
files) is joined with newlines; a part that is not text is a problem of its line.

A tool call is stored as text, so every curation step (scrubbing, dedup, review) sees it and every chat
template renders it: an assistant turn whose content is one ``<tool_call>{"name": ..., "arguments": ...}
</tool_call>`` block per call (the convention of Hermes and Qwen templates), after the turn's own text if
it has any. A tool's answer is a ``tool`` turn; a turn's ``name`` (the tool that answered, or a speaker's
name) is kept beside its role and content.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from curation.data.records import ROLES, new_record_id

SCHEMAS = ("messages", "openai", "alpaca", "dolly", "sharegpt", "prompt_completion", "preference", "oasst")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system", "function_call": "tool_call", "observation": "tool", "tool": "tool",
                  "function": "tool"}
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
# The keys each schema reads; every other key of a row is kept in the record's meta.
CONSUMED = {
    "messages": {"messages"},
    "alpaca": {"instruction", "input", "output"},
    "dolly": {"instruction", "context", "response"},
    "sharegpt": {"conversations"},
    "prompt_completion": {"prompt", "completion"},
    "preference": {"prompt", "chosen", "rejected", "conversations"},
}


class Problems:
    """The errors and warnings of an import, each prefixed with where it is ('line 17: ...')."""

    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, where: str, text: str) -> None:
        self.errors.append(f"{where}: {text}")

    def warn(self, where: str, text: str) -> None:
        self.warnings.append(f"{where}: {text}")


@dataclass
class Parsed:
    """A row as conversation turns; ``chosen``/``rejected`` only for preference data."""
    messages: list[dict[str, str]]
    chosen: list[dict[str, str]] | None = None
    rejected: list[dict[str, str]] | None = None


def detect_schema(keys: set[str]) -> str | None:
    """The schema a row with these keys follows, or None."""
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "response"} <= keys:
        return "dolly"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if {"message_id", "parent_id", "role", "text"} <= keys or {"message_tree_id", "prompt"} <= keys:
        return "oasst"
    return None


EXPECTED = ("'messages' (chat, OpenAI), 'conversations' (ShareGPT), 'instruction'+'output' (Alpaca), "
            "'instruction'+'context'+'response' (Dolly), 'prompt'+'completion', 'chosen'+'rejected' (preference "
            "pairs), 'message_id'+'parent_id'+'role'+'text' (OASST messages) or 'message_tree_id'+'prompt' (OASST "
            "trees)")


def convert_row(schema: str, data: dict, where: str, problems: Problems) -> Parsed | None:
    """The row as turns, or None with the reasons added to ``problems``."""
    if schema in ("messages", "openai"):
        messages = messages_field(data.get("messages"), "messages", where, problems)
    elif schema == "sharegpt":
        messages = _sharegpt(data, where, problems)
    elif schema == "alpaca":
        messages = _instruction(data, "output", "input", where, problems)
    elif schema == "dolly":
        messages = _instruction(data, "response", "context", where, problems)
    elif schema == "preference":
        return _preference(data, where, problems)
    else:
        messages = _prompt_completion(data, where, problems)
    return None if messages is None else Parsed(messages)


# -- content ----------------------------------------------------------------------------------

def content_text(value, field_name, where, problems, *, allow_empty=False) -> str | None:
    """A turn's text: a string, or a list of text parts joined with newlines."""
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            text = part if isinstance(part, str) else None
            if isinstance(part, dict):
                kind = part.get("type", "text")
                if kind != "text":
                    problems.error(where, f"{field_name}[{i}] is a '{kind}' part; only text parts can be imported")
                    return None
                text = part.get("text", part.get("value"))
            if not isinstance(text, str):
                problems.error(where, f"{field_name}[{i}] must be a text part ({{type: text, text}}), got "
                                      f"{type(part).__name__}")
                return None
            parts.append(text)
        value = "\n".join(parts)
    if value is None:
        problems.error(where, f"{field_name} is missing")
        return None
    if not isinstance(value, str):
        problems.error(where, f"{field_name} must be text, got {type(value).__name__}")
        return None
    if not value.strip() and not allow_empty:
        problems.error(where, f"{field_name} is empty")
        return None
    return value


def tool_call_text(name: str, arguments: Any) -> str:
    """One tool call as the text an assistant turn holds: ``<tool_call>{"name", "arguments"}</tool_call>``."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def _tool_calls(calls, field_name, where, problems) -> list[str] | None:
    """OpenAI ``tool_calls`` (``[{type: function, function: {name, arguments}}]``) as tool-call blocks."""
    if not isinstance(calls, list):
        problems.error(where, f"{field_name} must be a list of {{type, function: {{name, arguments}}}}")
        return None
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            problems.error(where, f"{field_name}[{i}] needs function.name (the tool called)")
            return None
        out.append(tool_call_text(fn["name"], fn.get("arguments", {})))
    return out


def messages_field(value, name, where, problems) -> list[dict[str, str]] | None:
    """A list of ``{role, content}`` (OpenAI's chat shape, with tool calls and tool turns), checked turn by turn."""
    if value is None:
        problems.error(where, f"'{name}' is missing")
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            problems.error(where, f"'{name}' must be a list of {{role, content}}, got a string")
            return None
    if not isinstance(value, (list, tuple)):
        problems.error(where, f"'{name}' must be a list of {{role, content}}, got {type(value).__name__}")
        return None
    if not value:
        problems.error(where, f"'{name}' is an empty list; a record needs at least one turn")
        return None
    out = []
    for i, msg in enumerate(value):
        field_name = f"{name}[{i}]"
        if not isinstance(msg, dict):
            problems.error(where, f"{field_name} must be an object with role and content, got {type(msg).__name__}")
            continue
        role = msg.get("role")
        if role not in ROLES:
            shown = "missing" if role is None else f"'{role}'"
            problems.error(where, f"{field_name}.role is {shown}; expected system, user, assistant or tool")
            continue
        calls = msg.get("tool_calls") if role == "assistant" else None
        if calls:
            blocks = _tool_calls(calls, f"{field_name}.tool_calls", where, problems)
            text = content_text(msg.get("content") or "", f"{field_name}.content", where, problems, allow_empty=True)
            if blocks is None or text is None:
                continue
            content = "\n".join(([text] if text.strip() else []) + blocks)
        else:
            content = content_text(msg.get("content"), f"{field_name}.content", where, problems)
            if content is None:
                continue
        turn = {"role": ROLES[ROLES.index(role)], "content": content}   # the shared constant, not a copy per turn
        if isinstance(msg.get("name"), str) and msg["name"].strip():
            turn["name"] = msg["name"]
        out.append(turn)
    return out


def _system(data) -> list[dict[str, str]]:
    system = data.get("system")
    return [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []


# -- the schemas ------------------------------------------------------------------------------

def _sharegpt_turns(turns, name, where, problems) -> list[dict[str, str]] | None:
    if isinstance(turns, dict):
        turns = [turns]
    if not isinstance(turns, list) or not turns:
        problems.error(where, f"'{name}' must be a non-empty list of {{from, value}}")
        return None
    messages = []
    for i, turn in enumerate(turns):
        field_name = f"{name}[{i}]"
        if not isinstance(turn, dict):
            problems.error(where, f"{field_name} must be an object with from and value")
            continue
        if "from" not in turn and "role" in turn:   # a messages-style turn inside a ShareGPT file
            turn = {"from": turn["role"], "value": turn.get("content")}
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            problems.error(where, f"{field_name}.from is {'missing' if speaker is None else repr(speaker)}; "
                                  f"expected human, gpt, system, function_call or observation")
            continue
        value = content_text(turn.get("value"), f"{field_name}.value", where, problems)
        if value is None:
            continue
        if role == "tool_call":
            try:
                call = json.loads(value)
            except json.JSONDecodeError:
                call = None
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                problems.error(where, f"{field_name}.value must be the JSON of a tool call, {{\"name\": ..., "
                                      f"\"arguments\": {{...}}}}")
                continue
            messages.append({"role": "assistant", "content": tool_call_text(call["name"], call.get("arguments", {}))})
        else:
            messages.append({"role": role, "content": value})
    return messages


def _sharegpt(data, where, problems):
    turns = _sharegpt_turns(data.get("conversations"), "conversations", where, problems)
    return None if turns is None else _system(data) + turns


def _instruction(data, answer_key, extra_key, where, problems):
    """Alpaca (instruction, input, output) and Dolly (instruction, context, response): the user turn is the
    instruction, then the input or context when there is one."""
    instruction = content_text(data.get("instruction"), "instruction", where, problems)
    answer = content_text(data.get(answer_key), answer_key, where, problems)
    extra = data.get(extra_key)
    if extra is not None and not isinstance(extra, str):
        problems.error(where, f"{extra_key} must be text, got {type(extra).__name__}")
        return None
    if instruction is None or answer is None:
        return None
    prompt = instruction if not (extra or "").strip() else f"{instruction}\n\n{extra}"
    return _system(data) + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _prompt_completion(data, where, problems):
    prompt, completion = data.get("prompt"), data.get("completion")
    messages = _system(data)
    for value, name, role in ((prompt, "prompt", "user"), (completion, "completion", "assistant")):
        if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            messages += messages_field(value, name, where, problems) or []   # trl's conversational shape
        else:
            text = content_text(value, name, where, problems)
            if text is not None:
                messages.append({"role": role, "content": text})
    return messages


def _turns(value, name, role, where, problems) -> list[dict[str, str]] | None:
    """An answer or a prompt of preference data: text (one turn of ``role``), messages, or ShareGPT turns."""
    if isinstance(value, str):
        text = content_text(value, name, where, problems)
        return None if text is None else [{"role": role, "content": text}]
    turns = [value] if isinstance(value, dict) else value
    if isinstance(turns, list) and turns and all(isinstance(t, dict) and "from" in t for t in turns):
        return _sharegpt_turns(turns, name, where, problems)
    return messages_field(turns, name, where, problems)


def _preference(data, where, problems) -> Parsed | None:
    before = len(problems.errors)
    if "conversations" in data:
        prompt = _sharegpt(data, where, problems)
    elif "prompt" in data:
        prompt = _turns(data["prompt"], "prompt", "user", where, problems)
        prompt = None if prompt is None else _system(data) + prompt
    else:
        prompt = []
    chosen = _turns(data.get("chosen"), "chosen", "assistant", where, problems)
    rejected = _turns(data.get("rejected"), "rejected", "assistant", where, problems)
    if len(problems.errors) > before or prompt is None or chosen is None or rejected is None:
        return None
    if not prompt:   # trl's implicit prompt: the turns both conversations share
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        while n and chosen[n - 1]["role"] != "user":
            n -= 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    if not prompt or prompt[-1]["role"] != "user":
        problems.error(where, "the prompt must end with the user turn both answers reply to")
        return None
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer or any(m["role"] not in ("assistant", "tool") for m in answer):
            problems.error(where, f"{name} must be the assistant's answer (assistant turns after the prompt)")
            return None
    if chosen == rejected:
        problems.error(where, "chosen and rejected are the same answer, so the pair teaches nothing")
        return None
    return Parsed(prompt, chosen, rejected)


# -- OASST trees ------------------------------------------------------------------------------

@dataclass
class _Node:
    where: str
    order: int
    row: dict
    children: list["_Node"] = field(default_factory=list)


class OasstTrees:
    """The messages of OASST-style trees, gathered row by row; ``conversations`` flattens each tree to its
    best-ranked path (see the module docstring)."""

    def __init__(self):
        self.nodes: dict[str, _Node] = {}
        self.deleted: set[str] = set()

    def add(self, data: dict, where: str, problems: Problems) -> bool:
        """Check one message row and keep it; False (with the reason in ``problems``) if it is bad."""
        mid, role = data.get("message_id"), data.get("role")
        if not isinstance(mid, str) or not mid:
            problems.error(where, "message_id is missing")
            return False
        if mid in self.nodes:
            problems.error(where, f"message_id '{mid}' repeats {self.nodes[mid].where}")
            return False
        if role not in OASST_ROLES:
            shown = "missing" if role is None else repr(role)
            problems.error(where, f"role is {shown}; expected prompter or assistant")
            return False
        if content_text(data.get("text"), "text", where, problems) is None:
            return False
        if data.get("deleted"):
            self.deleted.add(mid)
        else:
            self.nodes[mid] = _Node(where, len(self.nodes), data)
        return True

    def add_tree(self, data: dict, where: str, problems: Problems) -> None:
        """Keep every message of one exported tree (``prompt`` and its nested ``replies``)."""
        tree = data.get("message_tree_id")
        pending = [(data["prompt"], None)]
        while pending:
            node, parent = pending.pop()
            if not isinstance(node, dict):
                problems.error(where, f"a message of tree '{tree}' must be an object, got {type(node).__name__}")
                continue
            replies = node.get("replies") or []
            message = {k: v for k, v in node.items() if k != "replies"}
            if self.add({**message, "parent_id": parent, "message_tree_id": tree}, where, problems):
                pending += [(reply, node.get("message_id")) for reply in reversed(replies)]

    def conversations(self, problems: Problems):
        """(where, record id, messages, meta) of each tree, roots in file order."""
        roots = []
        for node in self.nodes.values():
            parent = node.row.get("parent_id")
            if parent is None:
                roots.append(node)
            elif parent in self.nodes:
                self.nodes[parent].children.append(node)
            elif parent not in self.deleted:   # a reply to a deleted message goes with it
                problems.error(node.where, f"parent_id '{parent}' names no message of the file")
        for root in roots:
            if root.row["role"] != "prompter":
                problems.error(root.where, "a tree must start with the prompter's message")
                continue
            path = [root]
            while path[-1].children:
                path.append(min(path[-1].children, key=_rank_order))
            while path and path[-1].row["role"] != "assistant":
                path.pop()
            if not path:
                problems.warn(root.where, "the tree has no assistant reply; it is left out")
                continue
            messages = [{"role": OASST_ROLES[n.row["role"]], "content": n.row["text"]} for n in path]
            tree = root.row.get("message_tree_id") or root.row["message_id"]
            meta = {"message_tree_id": tree, "message_ids": [n.row["message_id"] for n in path]}
            if isinstance(root.row.get("lang"), str):
                meta["lang"] = root.row["lang"]
            yield root.where, str(tree), messages, meta


def _rank_order(node: _Node):
    rank = node.row.get("rank")
    return (0, rank, node.order) if isinstance(rank, (int, float)) else (1, 0, node.order)


def derived_id(messages, chosen=None) -> str:
    """A stable id from the content, for a row that brings none."""
    return new_record_id(messages if chosen is None else messages + chosen)
