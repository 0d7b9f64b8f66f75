"""Memory budgets shared by the stages of one analysis: the bytes of partial frame payloads and of
buffered handshakes that all connections together may hold, so that a capture with thousands of
connections each in the middle of something large cannot grow without bound."""

from __future__ import annotations

from collections.abc import Callable

from analyzer.events import Frame, FrameEvent, Problem
from analyzer.protocol import ProblemKind

__all__ = ["HANDSHAKE_BUDGET_BYTES", "PAYLOAD_BUDGET_BYTES", "SHARED_BUDGET", "SHARED_HANDSHAKE_BUDGET",
           "BudgetedPayload", "PayloadBudget"]


class PayloadBudget:
    """The bytes of partial frame payloads that all decoders sharing this budget may hold.

    A frame within `max_payload` whose payload arrives over several feeds is buffered until it
    is complete; each decoder's buffer is bounded by max_payload, but a capture with thousands of
    connections each in the middle of a large frame is not. Over the budget, the frame being
    buffered gives its bytes back and is counted, not kept (FRAME_TOO_LARGE, payload None).
    """

    __slots__ = ("held", "limit", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0            # bytes held now
        self.refused = 0         # frames that were dropped from buffering for lack of budget

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            self.refused += 1
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


#: Partial frame payloads held by all frame decoders of one analysis (divided when processes
#: share a capture).
PAYLOAD_BUDGET_BYTES = 64 << 20
#: Bytes held by all handshake parsers of one analysis (divided likewise).
HANDSHAKE_BUDGET_BYTES = 64 << 20

#: The budgets every decoder / handshake parser uses unless given its own (a stage used alone).
SHARED_BUDGET = PayloadBudget(PAYLOAD_BUDGET_BYTES)
SHARED_HANDSHAKE_BUDGET = PayloadBudget(HANDSHAKE_BUDGET_BYTES)


class BudgetedPayload:
    """The partial payload a decoder holds against a PayloadBudget (shared by the RFC 6455 and
    hixie decoders)."""

    __slots__ = ("_budget", "_held", "_payload", "_remaining")
    _budget: PayloadBudget
    _held: int
    _payload: bytearray | None
    _remaining: int             # payload bytes of the frame still to come

    def _gap_in_payload(self, size: int, complete: Callable[[], Frame], out: list[FrameEvent]) -> int:
        """A TCP gap of `size` bytes while a payload streams: the payload is unknown from here (its
        partial bytes are dropped) and the frame is complete (`complete()`, payload None) when
        the gap reaches its end. Returns the bytes of the gap past the frame: 0 when the gap lay
        wholly in the payload (sync kept), else the next header is (partly) in the gap."""
        past = size - self._remaining
        self._remaining = max(0, -past)
        self._drop_payload()
        if not self._remaining:
            out.append(complete())
        return max(0, past)

    def _drop_payload(self) -> None:
        """Forget the partial payload and give its bytes back to the budget."""
        self._payload = None
        if self._held:
            self._budget.give(self._held)
            self._held = 0

    def _budget_refusal(self, what: str, record_no: int, ts_ns: int) -> Problem:
        """Drop the partial payload of a frame the budget has no room for; the problem to report."""
        kept = len(self._payload or b"")
        self._drop_payload()
        budget = self._budget
        return Problem(
            ProblemKind.FRAME_TOO_LARGE,
            f"expected=partial payloads within the shared budget of {budget.limit} bytes, "
            f"found={budget.held} bytes held by other frames ({what}, {kept} bytes buffered): "
            "payload counted, not kept", record_no, ts_ns)

    def __del__(self) -> None:
        if self._held:
            self._budget.give(self._held)
            self._held = 0
