"""Regression suites: prompts an admin writes with what every answer must (or must not) do.

A suite is a named list of cases; a case is a prompt and its checks:

- ``contains``: the answer includes ``value`` (case-insensitive unless ``case_sensitive: true``);
- ``not_contains``: the answer does not include ``value`` (same rule);
- ``regex``: ``pattern`` matches somewhere in the answer (Python ``re.search``; ``(?i)`` for any case);
- ``json_schema``: the answer is valid JSON (a lone ```json fenced block counts) that satisfies
  ``schema`` (JSON Schema; ``{}`` accepts any JSON).

A suite runs for the base model and for a run's adapter from one model in memory (the adapter
switched off and on, as for rating), through the generation cache; each answer and each failed
check is stored, so the rounds view shows which case a round broke.

Example::

    suite = create_suite(ws, "house rules")
    add_case(ws, suite, "Where is order LM-1234?", [{"kind": "contains", "value": "Account > Orders"},
                                                     {"kind": "not_contains", "value": "I don't know"}])
    results = run_suite(ws, suite, run="3")          # {'base': SuiteResult, 'finetuned': SuiteResult}

``python -m evaluation.regression import suite.yaml | list | show SUITE | run SUITE --run RUN``
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputProblem, TuneloopError
from core.workspace import Workspace
from evaluation.arena import run_key
from training.inference import DecodingSettings

CHECK_KINDS = ("contains", "not_contains", "regex", "json_schema")
_FENCED = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Case:
    id: int
    suite_id: int
    name: str
    messages: list[dict[str, str]]
    checks: list[dict[str, Any]]

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"]


@dataclass(frozen=True)
class Suite:
    id: int
    name: str
    description: str
    cases: list[Case]


@dataclass
class CaseResult:
    case_id: int
    name: str
    response: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class SuiteResult:
    suite_id: int
    suite: str
    model: str                           # base | finetuned
    run_id: int | None
    results: list[CaseResult]
    regression_run_id: int | None = None

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.total if self.total else None


# -- checks -----------------------------------------------------------------------------------

def check_problems(check: Any) -> list[str]:
    """What is wrong with one check, in words an admin can act on (empty when it is fine)."""
    if not isinstance(check, dict):
        return ["a check is a mapping such as {kind: contains, value: 'Account > Orders'}"]
    kind = check.get("kind")
    if kind not in CHECK_KINDS:
        return [f"kind '{kind}' is not one of {', '.join(CHECK_KINDS)}"]
    if kind in ("contains", "not_contains"):
        if not isinstance(check.get("value"), str) or not check["value"]:
            return [f"{kind} needs a non-empty text 'value'"]
    elif kind == "regex":
        if not isinstance(check.get("pattern"), str) or not check["pattern"]:
            return ["regex needs a 'pattern'"]
        try:
            re.compile(check["pattern"])
        except re.error as exc:
            return [f"regex pattern '{check['pattern']}' does not compile: {exc}"]
    elif kind == "json_schema":
        schema = check.get("schema", {})
        if not isinstance(schema, (dict, bool)):
            return ["json_schema needs a 'schema' that is a JSON Schema object ({} accepts any JSON)"]
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            return [f"the JSON schema is invalid: {exc.message}"]
    return []


def check_response(response: str, check: dict[str, Any]) -> str | None:
    """None when the answer passes the check, else what was wrong with it."""
    kind = check["kind"]
    if kind in ("contains", "not_contains"):
        value = check["value"]
        sensitive = bool(check.get("case_sensitive"))
        found = (value in response) if sensitive else (value.lower() in response.lower())
        if kind == "contains" and not found:
            return f"does not contain '{value}'"
        if kind == "not_contains" and found:
            return f"contains '{value}', which it must not"
        return None
    if kind == "regex":
        return None if re.search(check["pattern"], response) else f"does not match /{check['pattern']}/"
    text = response.strip()
    fenced = _FENCED.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"is not valid JSON ({exc.msg} at character {exc.pos})"
    from jsonschema.validators import validator_for
    schema = check.get("schema", {})
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "the top level"
        return f"JSON does not fit the schema at {where}: {errors[0].message}"
    return None


def evaluate_case(case: Case, response: str) -> CaseResult:
    failures = [f for f in (check_response(response, c) for c in case.checks) if f]
    return CaseResult(case_id=case.id, name=case.name, response=response, failures=failures)


# -- suites and cases -------------------------------------------------------------------------

def create_suite(ws: Workspace, name: str, description: str = "", *, created_by: str | None = None) -> int:
    name = (name or "").strip()
    if not name:
        raise TuneloopError("a regression suite needs a name")
    if ws.db.execute("select 1 from regression_suites where name=?", (name,)).fetchone():
        raise TuneloopError(f"there is already a regression suite called '{name}'; choose another name")
    with ws.transaction() as db:
        return db.execute("insert into regression_suites (name, description, created_by) values (?,?,?)",
                          (name, description, created_by)).lastrowid


def _messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise TuneloopError("a regression case needs a prompt")
        return [{"role": "user", "content": prompt.strip()}]
    messages = list(prompt)
    if not messages or messages[-1].get("role") != "user" or any(
            m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str)
            for m in messages):
        raise TuneloopError("a regression case's conversation is a list of {role, content} ending with a user turn")
    return messages


def add_case(ws: Workspace, suite: int | str, prompt: str | list[dict[str, str]], checks: list[dict[str, Any]], *,
             name: str | None = None) -> int:
    """Add a case; every check is validated first and every problem is named."""
    suite_id = get_suite(ws, suite).id
    messages = _messages(prompt)
    if not checks:
        raise TuneloopError("a regression case needs at least one check (contains, not_contains, regex, json_schema)")
    problems = [f"check {i}: {p}" for i, c in enumerate(checks, start=1) for p in check_problems(c)]
    if problems:
        raise InputProblem(problems, source=f"case '{name or messages[-1]['content'][:40]}'")
    case_name = (name or "").strip() or messages[-1]["content"][:60]
    if ws.db.execute("select 1 from regression_cases where suite_id=? and name=?", (suite_id, case_name)).fetchone():
        raise TuneloopError(f"the suite already has a case called '{case_name}'")
    with ws.transaction() as db:
        return db.execute("insert into regression_cases (suite_id, name, messages, checks) values (?,?,?,?)",
                          (suite_id, case_name, json.dumps(messages, ensure_ascii=False),
                           json.dumps(checks, ensure_ascii=False))).lastrowid


def remove_case(ws: Workspace, case_id: int) -> None:
    """Delete a case and its stored results."""
    with ws.transaction() as db:
        if not db.execute("delete from regression_cases where id=?", (int(case_id),)).rowcount:
            raise TuneloopError(f"there is no regression case #{case_id}")


def get_suite(ws: Workspace, suite: int | str) -> Suite:
    """A suite by id or by name, with its cases in the order they were added."""
    text = str(suite).strip()
    row = ws.db.execute("select * from regression_suites where name=?", (text,)).fetchone()
    if row is None and text.lstrip("#").isdigit():
        row = ws.db.execute("select * from regression_suites where id=?", (int(text.lstrip("#")),)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no regression suite '{text}'; `python -m evaluation.regression list` shows them")
    cases = [Case(id=r["id"], suite_id=r["suite_id"], name=r["name"], messages=json.loads(r["messages"]),
                  checks=json.loads(r["checks"]))
             for r in ws.db.execute("select * from regression_cases where suite_id=? order by id", (row["id"],))]
    return Suite(id=row["id"], name=row["name"], description=row["description"], cases=cases)


def list_suites(ws: Workspace) -> list[Suite]:
    return [get_suite(ws, r[0]) for r in ws.db.execute("select id from regression_suites order by id")]


def import_suite(ws: Workspace, path: str | Path, *, created_by: str | None = None) -> Suite:
    """A suite from YAML or JSON: ``{name, description?, cases: [{name?, prompt | messages, checks}]}``.

    Every case is checked before anything is written; an invalid file adds nothing.
    """
    import yaml
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TuneloopError(f"{path} could not be read as YAML or JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data.get("name"):
        raise TuneloopError(f"{path}: a suite file has a 'name' and a list of 'cases'")
    problems, cases = [], []
    for i, case in enumerate(data["cases"], start=1):
        if not isinstance(case, dict):
            problems.append(f"case {i}: expected a mapping with prompt and checks")
            continue
        prompt = case.get("messages") or case.get("prompt")
        try:
            messages = _messages(prompt or "")
        except TuneloopError as exc:
            problems.append(f"case {i}: {exc}")
            continue
        checks = case.get("checks") or []
        if not checks:
            problems.append(f"case {i}: needs at least one check")
        problems += [f"case {i}, check {j}: {p}" for j, c in enumerate(checks, start=1) for p in check_problems(c)]
        cases.append((case.get("name"), messages, checks))
    if problems:
        raise InputProblem(problems, source=str(path))
    suite_id = create_suite(ws, str(data["name"]), str(data.get("description") or ""), created_by=created_by)
    for name, messages, checks in cases:
        add_case(ws, suite_id, messages, checks, name=name)
    return get_suite(ws, suite_id)


# -- running ----------------------------------------------------------------------------------

def run_suite(ws: Workspace, suite: int | str, *, run: str, settings=None, batch_size: int = 8,
              load_in_4bit: bool = False, progress=None, cancel: threading.Event | None = None) -> dict[str, SuiteResult]:
    """Answer every case with the base model and the run's adapter; check, store and return both results."""
    from evaluation.generate import PromptItem, generate_pairs, resolve_adapter
    the_suite = get_suite(ws, suite)
    if not the_suite.cases:
        raise TuneloopError(f"suite '{the_suite.name}' has no cases yet; add a prompt with its checks first")
    models = resolve_adapter(ws, run)
    items = [PromptItem(prompt_id=f"regression-{c.id}", messages=c.messages) for c in the_suite.cases]
    pairs = generate_pairs(ws, items, base_model=models.base_model, adapter=models.adapter,
                           settings=settings or DecodingSettings(), batch_size=batch_size, load_in_4bit=load_in_4bit,
                           progress=progress, cancel=cancel)
    out = {}
    for model, column in (("base", 0), ("finetuned", 1)):
        results = [evaluate_case(case, pair[column]) for case, pair in zip(the_suite.cases, pairs)]
        out[model] = store_suite_result(ws, SuiteResult(the_suite.id, the_suite.name, model, models.run_id, results),
                                        base_model=models.base_model, adapter=models.adapter)
    return out


def store_suite_result(ws: Workspace, result: SuiteResult, *, base_model: str, adapter: str | None) -> SuiteResult:
    with ws.transaction() as db:
        rid = db.execute(
            "insert into regression_runs (suite_id, run_id, model, base_model, adapter, passed, total)"
            " values (?,?,?,?,?,?,?)",
            (result.suite_id, run_key(ws, result.run_id), result.model, base_model, adapter, result.passed,
             result.total)).lastrowid
        db.executemany("insert into regression_results (regression_run_id, case_id, response, passed, failures)"
                       " values (?,?,?,?,?)",
                       [(rid, r.case_id, r.response, int(r.passed), json.dumps(r.failures, ensure_ascii=False))
                        for r in result.results])
    result.regression_run_id = rid
    return result


def latest_results(ws: Workspace, run_id: int | str | None, *, model: str = "finetuned") -> list[SuiteResult]:
    """The newest stored result of each suite for a run (``model`` base or finetuned)."""
    run_id = run_key(ws, run_id)
    rows = ws.db.execute(
        "select rr.*, s.name as suite from regression_runs rr join regression_suites s on s.id=rr.suite_id"
        " where rr.run_id is ? and rr.model=? and rr.id in"
        " (select max(id) from regression_runs where run_id is ? and model=? group by suite_id) order by s.id",
        (run_id, model, run_id, model)).fetchall()
    out = []
    for row in rows:
        cases = ws.db.execute(
            "select r.*, c.name from regression_results r join regression_cases c on c.id=r.case_id"
            " where r.regression_run_id=? order by c.id", (row["id"],)).fetchall()
        out.append(SuiteResult(row["suite_id"], row["suite"], row["model"], row["run_id"],
                               [CaseResult(c["case_id"], c["name"], c["response"], json.loads(c["failures"]))
                                for c in cases], regression_run_id=row["id"]))
    return out


def format_suite_result(result: SuiteResult) -> str:
    lines = [f"{result.suite} · {result.model}: {result.passed}/{result.total} cases pass"]
    for r in result.results:
        if not r.passed:
            lines.append(f"  FAIL {r.name}: " + "; ".join(r.failures))
    return "\n".join(lines)


# -- CLI --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.regression",
                                description="Regression suites: prompts with checks every answer must pass.")
    p.add_argument("--workspace", help="workspace folder (default: $TUNELOOP_WORKSPACE or ./workspace)")
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="add a suite from a YAML or JSON file")
    imp.add_argument("file")
    sub.add_parser("list", help="the suites and how many cases each has")
    show = sub.add_parser("show", help="a suite's cases and checks")
    show.add_argument("suite")
    run = sub.add_parser("run", help="answer a suite with the base model and a run's adapter, and check the answers")
    run.add_argument("suite")
    run.add_argument("--run", required=True, help="run id, run folder or adapter folder")
    run.add_argument("--max-new-tokens", type=int, default=DecodingSettings.max_new_tokens)
    run.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        ws = Workspace.open(args.workspace)
        if args.command == "import":
            suite = import_suite(ws, args.file)
            print(f"suite #{suite.id} '{suite.name}': {len(suite.cases)} cases")
        elif args.command == "list":
            for suite in list_suites(ws):
                print(f"#{suite.id} {suite.name}: {len(suite.cases)} cases")
        elif args.command == "show":
            suite = get_suite(ws, args.suite)
            print(json.dumps({"id": suite.id, "name": suite.name, "description": suite.description,
                              "cases": [{"id": c.id, "name": c.name, "messages": c.messages, "checks": c.checks}
                                        for c in suite.cases]}, indent=2, ensure_ascii=False))
        else:
            results = run_suite(ws, args.suite, run=args.run, settings=DecodingSettings(max_new_tokens=args.max_new_tokens))
            if args.json:
                print(json.dumps({m: {"passed": r.passed, "total": r.total,
                                      "cases": [{"name": c.name, "passed": c.passed, "failures": c.failures,
                                                 "response": c.response} for c in r.results]}
                                  for m, r in results.items()}, indent=2, ensure_ascii=False))
            else:
                print("\n".join(format_suite_result(r) for r in results.values()))
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
