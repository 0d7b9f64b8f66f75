"""Tests of analyzer.plots: every plot on an empty, a one-connection, a small and a 10,000-connection
analysis; what is drawn (bar totals, labels, titles) is checked, not just that nothing raised."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_stats import MS, T0, build, empty, small

from analyzer import plots
from analyzer.plots import PLOTS, PlotAccessor

STATUSES = ("clean", "half-closed", "abnormal", "open-at-end", "handshake-failed")


def large(n: int = 10_000) -> object:
    """n connections, each 1 s long and starting 10 ms apart; one text message and one close frame
    from the client in each; a pong with an RTT in every tenth; statuses cycle through all five."""
    conns, frames, messages = [], [], []
    for i in range(n):
        cid = i + 1
        start = T0 + i * 10 * MS
        status = STATUSES[i % 5]
        conns.append(dict(conn_id=cid, client_port=1024 + i % 60000, start=start, end=start + 1000 * MS,
                          duration=1000 * MS, close_status=status,
                          close_code=1006 if status == "abnormal" else 1000,
                          handshake_rtt=0.001 + (i % 7) / 1000))
        frames.append(dict(conn_id=cid, frame_no=3 * i + 1, ts=start + 100 * MS, payload_len=10 + i % 1000,
                           message_id=1))
        messages.append(dict(conn_id=cid, message_id=1, ts_start=start + 100 * MS,
                             ts_end=start + 100 * MS, size=10 + i % 1000, wire_bytes=10 + i % 1000,
                             type="text" if i % 3 else "binary"))
        frames.append(dict(conn_id=cid, frame_no=3 * i + 2, ts=start + 900 * MS, opcode=8,
                           opcode_name="close", payload_len=2, close_code=1000 + i % 4))
        if i % 10 == 0:
            frames.append(dict(conn_id=cid, frame_no=3 * i + 3, ts=start + 950 * MS, opcode=10,
                               opcode_name="pong", sender="server", rtt=0.0005 * (1 + i % 13)))
    problems = [dict(conn_id=i + 1, frame_no=3 * i + 1, kind=("tcp-gap", "invalid-utf8")[i // 50 % 2],
                     sender=(None, "client")[i // 50 % 2]) for i in range(0, n, 50)]
    frames.sort(key=lambda r: r["frame_no"])
    return build(conns, frames, messages, problems, name="large.pcap")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _render(ax) -> None:
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=50)
    assert buf.getvalue().startswith(b"\x89PNG")


def _bar_widths(ax) -> float:
    return sum(p.get_width() for p in ax.patches if hasattr(p, "get_width"))


@pytest.mark.parametrize("name", PLOTS)
def test_empty_analysis_says_no_data(name: str) -> None:
    ax = getattr(plots, name)(empty())
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 1 and texts[0].startswith("no data")
    assert ax.get_title()
    _render(ax)


@pytest.mark.parametrize("name", PLOTS)
def test_one_connection(name: str) -> None:
    a = build([dict(conn_id=7, close_code=1000, close_initiator="client", handshake_rtt=0.003,
                    end=T0 + 20 * MS)],
              [dict(conn_id=7, frame_no=4, ts=T0 + 1 * MS, payload_len=5, message_id=1),
               dict(conn_id=7, frame_no=5, ts=T0 + 2 * MS, opcode=9, opcode_name="ping"),
               dict(conn_id=7, frame_no=6, ts=T0 + 3 * MS, sender="server", opcode=10, opcode_name="pong",
                    rtt=0.001),
               dict(conn_id=7, frame_no=7, ts=T0 + 9 * MS, opcode=8, opcode_name="close", close_code=1000)],
              [dict(conn_id=7, message_id=1, ts_start=T0 + 1 * MS, ts_end=T0 + 1 * MS, size=5, wire_bytes=5)],
              [dict(conn_id=7, frame_no=5, kind="unmasked-client-frame", sender="client")])
    ax = getattr(PlotAccessor(a), name)()
    assert not any(t.get_text().startswith("no data") for t in ax.texts)
    _render(ax)


def test_close_codes_bars_and_labels() -> None:
    ax = plots.close_codes(small())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["1000 Normal closure", "1006 Abnormal closure", "4000 Private use"]
    assert _bar_widths(ax) == 4  # 2 close frames of 1000, one 4000, one connection without close (1006)
    assert "3 close frames, 1 connection ended without one" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["standard", "not-sent-on-wire", "private", "sent by client", "sent by server",
                      "no close frame"]


def test_versions_and_problems_bars() -> None:
    a = small()
    ax = plots.versions(a)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rfc6455 (version 13)", "hixie-76 (version 0)"]
    assert _bar_widths(ax) == 4
    ax = plots.problems(a.problems)  # a bare DataFrame works too
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tcp-gap", "close-not-echoed"]
    assert _bar_widths(ax) == 3


def test_connection_timeline_one_bar_each() -> None:
    ax = plots.connection_timeline(small())
    bars = [p for p in ax.patches]
    assert len(bars) == 4
    longest = max(p.get_width() for p in bars)
    assert longest == pytest.approx(1.98)  # conn 3: 20 ms → 2000 ms
    assert ax.get_yticklabels()[0].get_text() == "#1 10.0.0.1:40000"


def test_time_plots_of_tables_without_times_say_so() -> None:
    """Tables whose times are all null leave no moment to count from: a 'no data' plot (it was a
    TypeError in connection_timeline and an AttributeError in traffic)."""
    a = small()
    for name, table in (("connection_timeline", a.connections.assign(start=pd.NaT, end=pd.NaT)),
                        ("traffic", a.frames.assign(ts=pd.NaT))):
        ax = getattr(plots, name)(table)
        assert [t.get_text() for t in ax.texts] == ["no data: no times in the tables"], name
        _render(ax)


def test_traffic_totals_match_frames() -> None:
    a = small()
    ax = plots.traffic(a)
    assert "1ms buckets; counts" in ax.get_title()
    # traffic spanning under a second: the step lines are bytes per 1 ms bucket, not rates
    total = 0.0
    for line in ax.get_lines():
        y = line.get_ydata()[:-1]
        total += float(np.sum(y))
    assert total == pytest.approx(int((a.frames["payload_len"] + a.frames["header_len"]).sum()))


def test_message_sizes_and_rtt_counts() -> None:
    a = small()
    ax = plots.message_sizes(a)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["text (1)", "binary (1)"]
    ax = plots.rtt(a)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["handshake: n=4, median 3 ms", "ping → pong: n=1, median 2 ms"]


def test_large_analysis_aggregates() -> None:
    a = large()
    assert len(a.connections) == 10_000
    for name in PLOTS:
        ax = getattr(a.plot, name)()
        assert len(ax.get_yticklabels()) <= 40, name
        _render(ax)
    ax = plots.connection_timeline(a)
    assert "10,000 connections" in ax.get_title() and "too many" in ax.get_title()
    assert len(ax.get_yticklabels()) < 20  # a count axis, not ten thousand labels
    # at the busiest moment, 100 connections overlap (1 s long, one every 10 ms)
    top = max(max(np.max(path.vertices[:, 1]) for path in coll.get_paths()) for coll in ax.collections
              if coll.get_paths())
    assert 95 <= top <= 101


def test_dollar_signs_do_not_become_mathtext() -> None:
    a = build([dict(client="$x^2$")], [])
    ax = plots.connection_timeline(a)
    assert ax.get_yticklabels()[0].get_text() == r"#1 \$x^2\$:40000"
    _render(ax)


def test_rejects_unknown_input() -> None:
    with pytest.raises(TypeError):
        plots.traffic(42)
