"""Docs that cannot drift: every `zoo ...` command quoted in README.md, docs/**/*.md and `zoo --help`'s
epilog goes through the real command line (zoo.cli.main with every verb's action replaced by a no-op).

- Commands in code blocks are parsed in full, with their optional `[...]` parts both left out and put in;
  placeholders (NAME, RUN_DIR) become a value, `a|b` alternatives their first choice.
- Usage lines (those with placeholders) must not show an optional argument as required: an unbracketed
  positional placeholder must be a required positional and, in a synopsis (the epilog, or a line that
  brackets its optional parts), an unbracketed `--flag` a required option.
- Inline `zoo ...` spans in prose are often partial (`zoo eval --data`): their verb and flags must exist.

Generic over the parser: new verbs and options are checked as soon as the docs quote them.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

import zoo.cli as cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.\.\.)?$")
# Positionals argparse must leave optional because another option replaces them: (verb, dest) -> that option.
ALTERNATIVES = {("train", "recipe"): "--resume", ("reproduce", "tag"): "--all"}


def _split_commands(text: str) -> list[str]:
    """The zoo commands in one code line: columns (2+ spaces) and `a | b` chains, `python -m zoo` / torchrun."""
    text = re.sub(r"\s#.*$", "", text.rstrip())  # a trailing comment
    out = []
    for column in re.split(r"\s{2,}", text.strip()):
        parts = [p.strip() for p in column.split(" | ")]
        for i, part in enumerate(parts):
            m = re.match(r"^(?:.*-m\s+)?zoo\s+(.*)$", part)
            if m and (part.startswith("zoo ") or " -m zoo " in f" {part}"):
                out.append(m.group(1))
            elif i > 0 and out and re.match(r"^[a-z]", part):  # "zoo recipes | cat RECIPE": the chain's verbs
                out.append(part)
    return out


def _quoted() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """([(where, command)] from code blocks and the --help epilog, [(where, span)] from inline code)."""
    full, inline = [], []
    for path in DOCS:
        fenced = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                full += [(where, c) for c in _split_commands(line)]
            else:
                inline += [(where, s[4:]) for s in re.findall(r"`([^`]+)`", line) if s.startswith("zoo ")]
    epilog = cli.__doc__.split("\n\n", 1)[1]
    for line in epilog.splitlines():
        if line.strip().startswith("zoo "):
            full += [("zoo --help epilog", c) for c in _split_commands(line)]
    return full, inline


FULL, INLINE = _quoted()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _variants(command: str) -> list[list[str]]:
    """argv with every [optional] part left out, and with every one put in."""
    def tokens(text: str) -> list[str]:
        out = []
        for tok in shlex.split(text):
            tok = tok.removesuffix("...")
            if not tok:
                continue
            if "|" in tok and not tok.startswith("|"):
                tok = tok.split("|")[0]
            out.append("1" if PLACEHOLDER.match(tok) else tok)
        return out

    without = re.sub(r"\[[^\[\]]*\]", " ", command)
    while "[" in without:  # nested brackets
        without = re.sub(r"\[[^\[\]]*\]", " ", without)
    return [tokens(without), tokens(command.replace("[", " ").replace("]", " "))]


def _parses(argv: list[str], monkeypatch) -> str | None:
    """None when zoo's command line accepts argv; else what it said."""
    real = cli.build_parser

    def no_op_parser():
        parser = real()
        for sub in _subparsers(parser).values():
            sub.set_defaults(fn=lambda args: 0)
        return parser

    monkeypatch.setattr(cli, "build_parser", no_op_parser)
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        return f"exit {e.code}"
    return None if rc == 0 else f"returned {rc}"


def test_the_docs_quote_commands():
    assert len(FULL) > 40 and len(INLINE) > 20  # the collector still finds the docs' commands


@pytest.mark.parametrize("where, command", FULL, ids=[f"{w} {c}"[:90] for w, c in FULL])
def test_quoted_command_parses(where, command, monkeypatch, capsys):
    for argv in _variants(command):
        problem = _parses(argv, monkeypatch)
        assert problem is None, f"{where}: `zoo {command}` -> argv {argv}: {problem}\n{capsys.readouterr().err}"


@pytest.mark.parametrize("where, command", [(w, c) for w, c in FULL if re.search(r"\b[A-Z][A-Z_]{2,}\b", c)],
                         ids=lambda v: str(v)[:60])
def test_usage_lines_show_optional_arguments_in_brackets(where, command):
    sub = _subparsers(cli.build_parser()).get(command.split()[0])
    assert sub is not None, f"{where}: unknown verb in `zoo {command}`"
    options = {s: a for a in sub._actions for s in a.option_strings}
    positionals = [a for a in sub._actions if not a.option_strings and a.nargs not in ("*", argparse.REMAINDER)]
    outside = re.sub(r"\[[^\[\]]*\]", " ", command).split()[1:]  # what the line shows as required
    synopsis = where == "zoo --help epilog" or "[" in command
    shown, i = [], 0
    while i < len(outside):
        tok = outside[i]
        if tok.startswith("-"):
            action = options.get(tok.split("=")[0])
            assert action is not None, f"{where}: `zoo {command}`: {tok} is not an option of {command.split()[0]}"
            # An example (`zoo train --resume RUN_DIR`) may show an optional flag; a synopsis (the epilog, or a
            # line that brackets its optional parts) claims that an unbracketed flag is required.
            required = action.required or any(g.required and action in g._group_actions
                                               for g in sub._mutually_exclusive_groups)  # one of --to/--into-package
            if synopsis:
                assert required, f"{where}: `zoo {command}` shows the optional {tok} as required: bracket it"
            i += 1 if "=" in tok or action.nargs == 0 else 2
            continue
        if PLACEHOLDER.match(tok):
            shown.append(tok)
        i += 1
    for tok, action in zip(shown, positionals):
        if action.nargs in ("?",) and (command.split()[0], action.dest) not in ALTERNATIVES:
            pytest.fail(f"{where}: `zoo {command}` shows the optional {tok} ({action.dest}) as required: "
                        f"write [{tok}]")


@pytest.mark.parametrize("where, span", INLINE, ids=[f"{w} {s}"[:90] for w, s in INLINE])
def test_inline_mentions_name_real_verbs_and_flags(where, span):
    parser = cli.build_parser()
    subs = _subparsers(parser)
    words = shlex.split(span.replace("[", " ").replace("]", " "))
    global_flags = {s for a in parser._actions for s in a.option_strings}
    while words and words[0] in global_flags:  # `zoo -v ...`, `zoo --trust-unverified ...`
        words = words[1:]
    if words in ([], ["..."]):  # a global option shown for any verb
        return
    if words[0].endswith(":") and words[1:2] == ["error:"]:  # a quoted error line: `zoo train: error: ...`
        words = [words[0][:-1]]
    verb = words[0] if words else ""
    assert verb in subs, f"{where}: `zoo {span}`: no verb {verb!r} (known: {', '.join(subs)})"
    flags = {s for a in subs[verb]._actions for s in a.option_strings}
    for w in words[1:]:
        if w.startswith("--"):
            assert w.split("=")[0] in flags, f"{where}: `zoo {span}`: {verb} has no option {w.split('=')[0]}"
