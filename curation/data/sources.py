"""Where a cleaning command reads its records: a data file, or a version of a workspace.

Every cleaning CLI (``curation.pii``, ``curation.dedup``, ``curation.dedup.filters``,
``curation.splits``) takes INPUT as either; with a version (``v3``, or ``current``) it writes its
result as a new version of the same workspace, with the same functions as the tab's Apply.

Example::

    source = read_source("current", workspace="./workspace")
    source.records, source.version            # the records and the Version they came from
    read_source("tickets.jsonl").version      # None: a file
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core.errors import TuneloopError
from core.workspace import Workspace, workspace_path
from curation.data.records import Record
from curation.data.versions import Version, get_version, load_records, require_current

CURRENT = "current"
_VERSION_NAME = re.compile(r"(?i)(current|v?\d+)")


@dataclass
class Source:
    """The records a command works on, and the workspace version they came from (None for a file)."""
    records: list[Record]
    workspace: Workspace | None = None
    version: Version | None = None


def is_version_name(text: str) -> bool:
    """True for ``current``, ``v3`` and ``3``."""
    return bool(_VERSION_NAME.fullmatch(str(text).strip()))


def resolve_version(ws: Workspace, name: str | int) -> Version:
    """The version ``name`` names: ``current`` (the one every step starts from) or ``v3``."""
    if str(name).strip().lower() == CURRENT:
        return require_current(ws)
    return get_version(ws, name)


def open_workspace(path: str | os.PathLike | None) -> Workspace:
    """An existing workspace (a command given a version never makes an empty one by mistake)."""
    root = workspace_path(path)
    if not (root / "tuneloop.sqlite").is_file():
        raise TuneloopError(f"there is no workspace at {root}; give --workspace DIR of an existing workspace "
                            "(the app and `python -m curation import` make one)")
    return Workspace.open(root)


def read_source(name: str, workspace: str | os.PathLike | None = None, *, format: str | None = None) -> Source:
    """The records of ``name``: a version of ``workspace`` (default $TUNELOOP_WORKSPACE or ./workspace)
    when it looks like one (and ``workspace`` is given or no such file exists), else a data file."""
    if is_version_name(name) and (workspace is not None or not Path(name).exists()):
        ws = open_workspace(workspace)
        version = resolve_version(ws, name)
        return Source(records=load_records(ws, version.id), workspace=ws, version=version)
    if not Path(name).exists():
        raise TuneloopError(f"'{name}': no such file, and not a version either; give a file that exists, or a version "
                            "(v3, or current) with --workspace DIR")
    from curation.data.formats import read_records
    return Source(records=read_records(name, format=format).records)


def add_source_arguments(parser: argparse.ArgumentParser, *, output: str) -> None:
    """INPUT, an optional OUTPUT file and ``--workspace``, the same for every cleaning command."""
    parser.add_argument("input", help="a data file (JSONL, JSON, Parquet, CSV, HF folder) or a version of --workspace "
                                      "(v3, or current)")
    parser.add_argument("output", nargs="?",
                        help=f"{output}; needed for a file INPUT, optional for a version (which makes a new version)")
    parser.add_argument("--workspace", metavar="DIR",
                        help="the workspace whose version INPUT names (default: $TUNELOOP_WORKSPACE or ./workspace)")


def check_output(source: Source, output: str | None) -> None:
    """A file INPUT needs an OUTPUT to write to."""
    if source.version is None and not output:
        raise TuneloopError("INPUT is a file, so give OUTPUT too (or a version of --workspace as INPUT, which "
                            "makes a new version)")


@contextlib.contextmanager
def percent_bar(desc: str) -> Iterator[Callable[[float, str], None]]:
    """A terminal progress bar for a command, yielding the ``progress(fraction, text)`` callback the
    stages report through (the tab's ``gr.Progress`` takes the same two values); silent when stderr is
    not a terminal."""
    from tqdm import tqdm

    with tqdm(total=100, desc=desc, unit="%", disable=not sys.stderr.isatty()) as bar:
        def progress(fraction: float, text: str) -> None:
            bar.set_postfix_str(text, refresh=False)
            bar.update(max(0, round(fraction * 100) - bar.n))
        yield progress
