"""The protocol catalog: opcodes, close codes and their classes, versions and drafts, problem kinds.

Tables, plots and tests all name things through this module, so a name is spelled in one place.
"""

from __future__ import annotations

from enum import Enum, IntEnum

# RFC 6455, Section 11.3.4: the GUID appended to Sec-WebSocket-Key before hashing.
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Opcode(IntEnum):
    """RFC 6455, Section 5.2 - Base Framing Protocol (and 11.8 for the registry)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})
DATA_OPCODES = frozenset({0x0, 0x1, 0x2})

# draft-ietf-hybi-thewebsocketprotocol-04..06, Section 4.2: the opcodes before -07 renumbered them.
HYBI04_OPCODES: dict[int, int] = {
    0x0: Opcode.CONTINUATION,
    0x1: Opcode.CLOSE,
    0x2: Opcode.PING,
    0x3: Opcode.PONG,
    0x4: Opcode.TEXT,
    0x5: Opcode.BINARY,
}


def opcode_name(opcode: int) -> str:
    """'text', 'close'… for known opcodes, 'reserved-N' (N in hex, as RFC 6455 lists %x3-7) else."""
    try:
        return Opcode(opcode).name.lower()
    except ValueError:
        return f"reserved-{opcode:X}"


OPCODE_NAMES: tuple[str, ...] = tuple(opcode_name(i) for i in range(16))


class CloseCode(IntEnum):
    """QWebSocketProtocol::CloseCode plus the IANA registry's 1012-1014 (RFC 6455, Section 7.4.1)."""

    #: 1000 indicates a normal closure, meaning that the purpose for which the connection was
    #: established has been fulfilled.
    NORMAL = 1000
    #: 1001 indicates that an endpoint is "going away", such as a server going down or a browser
    #: having navigated away from a page.
    GOING_AWAY = 1001
    #: 1002 indicates that an endpoint is terminating the connection due to a protocol error.
    PROTOCOL_ERROR = 1002
    #: 1003 indicates that an endpoint received a type of data it cannot accept.
    UNSUPPORTED_DATA = 1003
    #: Reserved. The specific meaning might be defined in the future.
    RESERVED_1004 = 1004
    #: 1005 is a reserved value and MUST NOT be set as a status code in a Close control frame.
    NO_STATUS_RECEIVED = 1005
    #: 1006 is a reserved value and MUST NOT be set as a status code in a Close control frame;
    #: the connection was closed abnormally, without sending or receiving a Close control frame.
    ABNORMAL_CLOSURE = 1006
    #: 1007: data within a message was not consistent with its type (e.g. non-UTF-8 in a text message).
    INVALID_FRAME_PAYLOAD_DATA = 1007
    #: 1008: a message violates the endpoint's policy.
    POLICY_VIOLATION = 1008
    #: 1009: a message is too big to process.
    MESSAGE_TOO_BIG = 1009
    #: 1010: the client expected the server to negotiate one or more extensions.
    MANDATORY_EXTENSION = 1010
    #: 1011: the server met an unexpected condition that prevented it from fulfilling the request.
    INTERNAL_ERROR = 1011
    #: 1012 (IANA): the service is restarted.
    SERVICE_RESTART = 1012
    #: 1013 (IANA): the service is experiencing overload; try again later.
    TRY_AGAIN_LATER = 1013
    #: 1014 (IANA): the server acting as a gateway received an invalid response.
    BAD_GATEWAY = 1014
    #: 1015 MUST NOT be set as a status code in a Close frame: the TLS handshake failed.
    TLS_HANDSHAKE_FAILED = 1015


CLOSE_CODE_NAMES: dict[int, str] = {
    1000: "Normal closure",
    1001: "Going away",
    1002: "Protocol error",
    1003: "Unsupported data",
    1004: "Reserved",
    1005: "No status received",
    1006: "Abnormal closure",
    1007: "Invalid frame payload data",
    1008: "Policy violation",
    1009: "Message too big",
    1010: "Mandatory extension missing",
    1011: "Internal server error",
    1012: "Service restart",
    1013: "Try again later",
    1014: "Bad gateway",
    1015: "TLS handshake failed",
}

# Close codes that RFC 6455, Section 7.4.1 forbids in a Close frame on the wire.
NOT_SENT_ON_WIRE = frozenset({1005, 1006, 1015})

CLOSE_CODE_CLASSES: tuple[str, ...] = (
    "standard", "reserved", "not-sent-on-wire", "unassigned", "registered", "private", "invalid",
)


def close_code_class(code: int) -> str:
    """The class of a close code (RFC 6455 Section 7.4.2 ranges, plus the IANA assignments)."""
    if code in NOT_SENT_ON_WIRE:
        return "not-sent-on-wire"
    if code == 1004:
        return "reserved"
    if 1000 <= code <= 1014:
        return "standard"
    if 1016 <= code <= 2999:
        return "unassigned"
    if 3000 <= code <= 3999:
        return "registered"
    if 4000 <= code <= 4999:
        return "private"
    return "invalid"


def close_code_name(code: int) -> str:
    """The catalog name of a close code, or its class for codes outside the catalog."""
    name = CLOSE_CODE_NAMES.get(code)
    if name is not None:
        return name
    return {
        "unassigned": "Unassigned",
        "registered": "Registered (IANA)",
        "private": "Private use",
    }.get(close_code_class(code), "Invalid")


def close_code_valid_on_wire(code: int) -> bool:
    """May this code appear in a Close frame (RFC 6455 Section 7.4)? 1004 counts as not valid."""
    cls = close_code_class(code)
    return cls in ("standard", "registered", "private")


# --- versions and drafts (QWebSocketProtocol::Version) ---------------------------------------

VERSION_UNKNOWN = -1
VERSIONS: dict[int, str] = {
    -1: "unknown / hixie-75",
    0: "hixie-76 / hybi-00..03",
    4: "hybi-04",
    5: "hybi-05",
    6: "hybi-06",
    7: "hybi-07",
    8: "hybi-08..12",
    13: "hybi-13..17 / RFC 6455",
}

DRAFTS: tuple[str, ...] = (
    "hixie-75", "hixie-76", "hybi-00", "hybi-01", "hybi-02", "hybi-03", "hybi-04", "hybi-05",
    "hybi-06", "hybi-07", "hybi-08", "rfc6455", "unknown",
)

# The draft name for each Sec-WebSocket-Version value that the drafts define.
DRAFT_OF_VERSION: dict[int, str] = {4: "hybi-04", 5: "hybi-05", 6: "hybi-06", 7: "hybi-07",
                                    8: "hybi-08", 13: "rfc6455"}


def uses_hybi04_opcodes(version: int) -> bool:
    """hybi-04..06 numbered opcodes differently (close 1, ping 2, pong 3, text 4, binary 5)."""
    return version in (4, 5, 6)


def is_hixie(draft: str) -> bool:
    """hixie-75/76 and hybi-00..03 use 0x00..0xFF sentinel framing, not RFC 6455 frames."""
    return draft in ("hixie-75", "hixie-76", "hybi-00", "hybi-01", "hybi-02", "hybi-03")


# --- problems ----------------------------------------------------------------------------------

class ProblemKind(str, Enum):
    """Stable kebab-case keys for the `problems` table (tests and users filter on these)."""

    # capture and packets
    CAPTURE_TRUNCATED = "capture-truncated"
    CAPTURE_UNREADABLE = "capture-unreadable"
    # ring-buffer files read as one capture (analyzer.ring): where they do not join up
    CAPTURE_GAP = "capture-gap"                      # more than ring.GAP_NS with no record between files
    CAPTURE_OVERLAP = "capture-overlap"              # a file starts before the previous one ended
    CAPTURE_FILE_MISSING = "capture-file-missing"    # a sequence number of the file names is skipped
    CAPTURE_LINKTYPE_CHANGE = "capture-linktype-change"  # the next file's link type differs
    UNKNOWN_LINKTYPE = "unknown-linktype"
    MALFORMED_PACKET = "malformed-packet"
    PACKET_TRUNCATED = "packet-truncated"            # cut by the snap length
    IP_FRAGMENT_UNREASSEMBLED = "ip-fragment-unreassembled"
    # TCP
    TCP_GAP = "tcp-gap"
    TCP_OVERLAP_CONFLICT = "tcp-overlap-conflict"
    TCP_BUFFER_LIMIT = "tcp-buffer-limit"            # out-of-order bytes dropped at a memory cap
    FLOW_LIMIT = "flow-limit"                        # flows dropped at the flow-table cap
    FLOW_IDLE_RELEASED = "flow-released-idle"        # a flow let go after the idle timeout
    # handshake
    HTTP_MALFORMED = "http-malformed"
    HTTP_PIPELINE_LIMIT = "http-pipeline-limit"      # too many pipelined requests unanswered
    HANDSHAKE_FAILED = "handshake-failed"
    HANDSHAKE_NO_RESPONSE = "handshake-no-response"
    ACCEPT_KEY_MISMATCH = "accept-key-mismatch"
    SUBPROTOCOL_NOT_SELECTED = "subprotocol-not-selected"
    SUBPROTOCOL_NOT_OFFERED = "subprotocol-not-offered"
    EXTENSION_NOT_OFFERED = "extension-not-offered"
    HTTP_ON_DECODE_AS_PORT = "http-on-decode-as-port"  # ports=: HTTP after frames began; not decoded
    # frames
    UNMASKED_CLIENT_FRAME = "unmasked-client-frame"
    MASKED_SERVER_FRAME = "masked-server-frame"
    CONTROL_FRAME_TOO_LONG = "control-frame-too-long"
    FRAGMENTED_CONTROL_FRAME = "fragmented-control-frame"
    RESERVED_OPCODE = "reserved-opcode"
    RSV_WITHOUT_EXTENSION = "rsv-without-extension"
    NON_MINIMAL_LENGTH = "non-minimal-length"
    LENGTH_TOP_BIT_SET = "length-top-bit-set"
    FRAME_TOO_LARGE = "frame-too-large"              # counted, not buffered
    HIXIE_FRAME_ERROR = "hixie-frame-error"
    CAPTURE_ENDS_MID_FRAME = "capture-ends-mid-frame"
    FRAMES_LOST_AFTER_GAP = "frames-lost-after-gap"
    # messages
    CONTINUATION_WITHOUT_START = "continuation-without-start"
    MESSAGE_INTERRUPTED = "message-interrupted"      # a new data frame while one is fragmented
    INVALID_UTF8 = "invalid-utf8"
    INVALID_CLOSE_REASON_UTF8 = "invalid-close-reason-utf8"
    DECOMPRESSION_FAILURE = "decompression-failure"
    MESSAGE_OVER_LIMIT = "message-over-limit"
    CAPTURE_ENDS_MID_MESSAGE = "capture-ends-mid-message"
    # close
    INVALID_CLOSE_CODE = "invalid-close-code"
    FORBIDDEN_CLOSE_CODE = "forbidden-close-code"    # 1005/1006/1015 on the wire
    ONE_BYTE_CLOSE_PAYLOAD = "one-byte-close-payload"
    DATA_AFTER_CLOSE = "data-after-close"
    CLOSE_NOT_ECHOED = "close-not-echoed"
    # TLS (wss://): what kept a TLS connection's records from being decrypted, and what broke them
    TLS_KEY_MISSING = "tls-key-missing"              # no key log line for the connection's client random
    TLS_UNSUPPORTED_CIPHER = "tls-unsupported-cipher"  # a suite (or version) we cannot decrypt
    TLS_DECRYPT_FAILED = "tls-decrypt-failed"        # a record failed authentication (wrong key, damage)
    TLS_MALFORMED = "tls-malformed"                  # a record or handshake message that does not parse
    TLS_GAP = "tls-gap"                              # a TCP gap inside TLS: resynchronised or given up
    TLS_ALERT = "tls-alert"                          # a fatal alert, or any alert before the handshake ended
    TLS_RENEGOTIATION = "tls-renegotiation"          # TLS ≤ 1.2 renegotiation: later records not decrypted
    TLS_RECORD_CUT = "tls-record-cut"                # the capture ends inside a TLS record
    # HTTP/2 (RFC 8441 WebSockets)
    H2_MALFORMED = "h2-malformed"                    # a frame or preface that does not parse
    H2_HPACK_ERROR = "h2-hpack-error"                # a header block that does not decode
    H2_CONNECT_NOT_ENABLED = "h2-connect-not-enabled"  # CONNECT without SETTINGS_ENABLE_CONNECT_PROTOCOL
    H2_CONNECT_REFUSED = "h2-connect-refused"        # a non-2xx answer to the extended CONNECT
    H2_STREAM_RESET = "h2-stream-reset"              # RST_STREAM of a WebSocket stream
    # application protocols inside the messages (analyzer.app)
    APP_PROTOCOL_MALFORMED = "app-protocol-malformed"  # a decoder's reason; or a decoder given up
    # limits of the whole analysis
    KEPT_PAYLOAD_LIMIT = "kept-payload-limit"        # payloads=True: payloads past the budget not kept
    # a bug of ours (never bad input): an exception inside a stage, caught at the connection
    INTERNAL_ERROR = "internal-error"

    def __str__(self) -> str:
        return self.value
