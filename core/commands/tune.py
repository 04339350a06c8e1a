"""`portpressure tune show [--json] | set NAME VALUE [--yes] | revert BACKUP_FILE [--yes]`.

set and revert print the plan (what will change, where, the backup folder, whether a
reboot is needed), then ask on a terminal. Without a terminal they refuse unless
--yes is given (exit 2), so a script never changes a server by accident; the plan
printed before the refusal is a dry run. On success the last line names the backup.

Hidden options carry what an elevated one-shot child needs (core.tuning.windows_elevation):
--elevated-child (never ask for elevation again), --result-file (its answer for the window).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.cli import EXIT_FAILED, EXIT_OK, UsageError
from core.tuning import (
    Applied,
    Plan,
    SettingState,
    TuningBackend,
    TuningError,
    TuningInputError,
    format_value,
    open_backend,
    pending_reboot_reminder,
)
from core.tuning.windows_elevation import write_child_result

# Tests replace this to run the command against a stand-in backend.
make_backend: Callable[..., TuningBackend] = open_backend


def register(sub: Any) -> None:
    p = sub.add_parser("tune", help="show or change the OS settings behind port exhaustion (guarded)")
    tune = p.add_subparsers(dest="tune_command", metavar="ACTION", parser_class=type(p))
    tune.required = True

    show = tune.add_parser("show", help="every setting: stored, in effect, default, valid range")
    show.add_argument("--json", action="store_true", help="one JSON list (the contract in DESIGN.md)")
    show.set_defaults(run=run_show)

    change = tune.add_parser("set", help="change a setting: plan, confirm, back up, write, verify")
    change.add_argument("name", metavar="NAME", help="the OS's own name, e.g. net.ipv4.tcp_tw_reuse")
    change.add_argument("value", metavar="VALUE", nargs="+",
                        help='the new value; a range is two numbers ("32768 60999")')
    _common(change)
    change.set_defaults(run=run_set)

    undo = tune.add_parser("revert", help="restore the value a backup file recorded")
    undo.add_argument("backup", metavar="BACKUP_FILE", help="a file written by `tune set`")
    _common(undo)
    undo.set_defaults(run=run_revert)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="apply without asking (needed without a terminal)")
    p.add_argument("--backup-dir", metavar="DIR", type=Path, default=None,
                   help="where backups go (default: $PORTPRESSURE_BACKUP_DIR or the per-user folder)")
    p.add_argument("--elevated-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, default=None, help=argparse.SUPPRESS)


def _backend(args: argparse.Namespace) -> TuningBackend:
    try:
        return make_backend(backup_dir=getattr(args, "backup_dir", None),
                            allow_elevation=not getattr(args, "elevated_child", False))
    except TuningError as exc:
        raise UsageError(f"portpressure tune: {exc}") from None


# -- show ------------------------------------------------------------------------------------
def run_show(args: argparse.Namespace) -> int:
    states = _backend(args).read_all()
    if args.json:
        print(json.dumps([s.to_json() for s in states], indent=2))
        return EXIT_OK
    print(format_states(states))
    return EXIT_OK


def format_states(states: Sequence[SettingState]) -> str:
    lines = []
    for s in states:
        lines.append(s.name)
        lines.append(f"  stored: {format_value(s.value, s.unit)}   "
                     f"in effect: {format_value(s.effective, s.unit)}   "
                     f"default: {format_value(s.default, s.unit)}")
        lines.append(f"  valid: {s.range}   reboot needed: {'yes' if s.needs_reboot else 'no'}")
        lines.append("  can change from here: " + ("yes" if s.writable else f"no: {s.why_not}"))
        lines += [f"  - {note}" for note in s.notes]
    reminder = pending_reboot_reminder(states)
    if reminder:
        lines.append(f"Reboot pending: {reminder}")
    return "\n".join(lines)


# -- set / revert ----------------------------------------------------------------------------
def run_set(args: argparse.Namespace) -> int:
    text = " ".join(args.value)

    def make_plan(backend: TuningBackend) -> Plan:
        return backend.plan(args.name, backend.validate(args.name, text))

    return _guarded(args, "portpressure tune set", make_plan)


def run_revert(args: argparse.Namespace) -> int:
    return _guarded(args, "portpressure tune revert",
                    lambda backend: backend.plan_revert(Path(args.backup)))


def _guarded(args: argparse.Namespace, prog: str, make_plan: Callable[[TuningBackend], Plan]) -> int:
    """Plan, confirm, apply; the elevated child also reports through --result-file, whatever
    went wrong: its parent has no other way to learn what happened."""
    applied: Applied | None = None
    error: str | None = None
    try:
        try:
            backend = _backend(args)
        except UsageError as exc:
            error = str(exc)
            raise
        try:
            plan = make_plan(backend)
        except TuningInputError as exc:
            error = str(exc)
            raise UsageError(f"{prog}: {exc}") from None
        except TuningError as exc:
            error = str(exc)
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(plan.describe())
        if plan.blocked:
            error = plan.blocked
            print(f"{prog}: not applied: {plan.blocked}", file=sys.stderr)
            return EXIT_FAILED
        if not args.yes:
            if not _stdin_is_terminal():
                error = "not confirmed"
                raise UsageError(f"{prog}: not applied: confirmation needed and stdin is not a terminal; "
                                 f"add --yes to apply without asking (nothing was changed)")
            if not _ask("Apply this change? [y/N] "):
                error = "declined"
                print("Not applied; nothing was changed.")
                return EXIT_FAILED
        try:
            applied = backend.apply(plan)
        except TuningError as exc:
            error = str(exc)
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        _report(applied)
        return EXIT_OK
    except Exception as exc:
        if error is None:  # unexpected: the traceback goes to stderr, which an elevated child has not
            error = f"unexpected error: {type(exc).__name__}: {exc}"
        raise
    finally:
        if args.result_file is not None:
            write_child_result(args.result_file, applied is not None,
                               applied.backup if applied else None, error)


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _ask(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _report(applied: Applied) -> None:
    state, plan = applied.state, applied.plan
    print(f"Done: {plan.setting} is now {format_value(state.value, state.unit)} "
          f"(read back and verified).")
    for message in applied.messages:
        print(message)
    reminder = pending_reboot_reminder([state])
    if reminder:
        print(f"Reboot pending: {reminder}")
    print(f"Backup: {applied.backup}")
