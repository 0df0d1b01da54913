"""Errors are values the UI can show: one project exception with a message a domain expert can act on."""


class TuneloopError(Exception):
    """A problem the user can fix; the message says what and where, in the user's words."""


class InputProblem(TuneloopError):
    """Bad input: lists every problem found, each naming the file, line and field."""

    def __init__(self, problems, *, source=None, limit=20):
        self.problems = list(problems)
        self.source = source
        shown = self.problems[:limit]
        more = len(self.problems) - len(shown)
        head = f"{source}: " if source else ""
        lines = [f"{head}{len(self.problems)} problem(s) found; nothing was imported."]
        lines += [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))
