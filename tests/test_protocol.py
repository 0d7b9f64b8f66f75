"""The protocol catalog: close-code classes and names, opcode names, versions and drafts."""

from __future__ import annotations

import pytest

from analyzer.protocol import (
    CLOSE_CODE_CLASSES,
    DRAFT_OF_VERSION,
    HYBI04_OPCODES,
    CloseCode,
    ProblemKind,
    close_code_class,
    close_code_name,
    close_code_valid_on_wire,
    is_hixie,
    opcode_name,
    uses_hybi04_opcodes,
)


@pytest.mark.parametrize(("code", "cls", "valid"), [
    (999, "invalid", False), (0, "invalid", False), (1000, "standard", True), (1003, "standard", True),
    (1004, "reserved", False), (1005, "not-sent-on-wire", False), (1006, "not-sent-on-wire", False),
    (1007, "standard", True), (1011, "standard", True), (1012, "standard", True), (1014, "standard", True),
    (1015, "not-sent-on-wire", False), (1016, "unassigned", False), (2999, "unassigned", False),
    (3000, "registered", True), (3999, "registered", True), (4000, "private", True),
    (4999, "private", True), (5000, "invalid", False), (65535, "invalid", False),
])
def test_close_code_classes(code, cls, valid):
    assert close_code_class(code) == cls
    assert cls in CLOSE_CODE_CLASSES
    assert close_code_valid_on_wire(code) is valid


def test_close_code_names_follow_the_catalog():
    assert close_code_name(1000) == "Normal closure"
    assert close_code_name(1006) == "Abnormal closure"
    assert close_code_name(1011) == "Internal server error"
    assert close_code_name(1012) == "Service restart"
    assert close_code_name(1015) == "TLS handshake failed"
    assert close_code_name(4001) == "Private use"
    assert close_code_name(3001) == "Registered (IANA)"
    assert close_code_name(42) == "Invalid"
    assert {int(c) for c in CloseCode} == set(range(1000, 1016))


def test_opcode_names():
    assert [opcode_name(i) for i in (0, 1, 2, 8, 9, 10)] == [
        "continuation", "text", "binary", "close", "ping", "pong"]
    assert opcode_name(3) == "reserved-3" and opcode_name(0xB) == "reserved-B"


def test_hybi04_opcode_table_maps_to_today():
    assert [opcode_name(HYBI04_OPCODES[i]) for i in range(6)] == [
        "continuation", "close", "ping", "pong", "text", "binary"]
    assert uses_hybi04_opcodes(4) and uses_hybi04_opcodes(6) and not uses_hybi04_opcodes(7)


def test_versions_and_drafts():
    assert DRAFT_OF_VERSION[13] == "rfc6455" and DRAFT_OF_VERSION[8] == "hybi-08"
    assert is_hixie("hixie-76") and is_hixie("hybi-02") and not is_hixie("hybi-04")


def test_problem_kinds_are_stable_kebab_case():
    for kind in ProblemKind:
        assert kind.value == kind.value.lower() and " " not in kind.value and "_" not in kind.value
        assert str(kind) == kind.value
