"""README's "Command line" section shows real output: each `$ ws-analyzer …` example there is run and
its lines compared with what the README prints (`| head -N` keeps the first N lines)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from analyzer import cli

ROOT = Path(__file__).resolve().parent.parent


def examples() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    blocks, current = [], None
    for line in section.splitlines():
        if line.startswith("```") and current is None:
            current = []
        elif line.startswith("```"):
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    found = []
    for block in blocks:
        for chunk in re.split(r"\n(?=\$ )", "\n".join(block).strip()):
            if chunk.startswith("$ ws-analyzer "):
                command, *lines = chunk.split("\n")
                found.append((command[2:], [line for line in lines if line]))
    return found


def test_the_section_has_examples() -> None:
    commands = [c.split()[1] for c, _ in examples()]
    assert {"connections", "frames", "messages", "follow", "problems"} <= set(commands)


@pytest.mark.parametrize(("command", "expected"), examples(), ids=[c for c, _ in examples()])
def test_readme_example_is_real_output(command: str, expected: list[str], capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    argv, _, head = command.partition(" | head -")
    args = shlex.split(argv)[1:]
    assert cli.main([*args, "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    if head:
        lines = lines[:int(head)]
    assert lines == expected
