"""One time axis for the report's time figures, and no rates extrapolated from sub-second buckets
(issue 16, report item 1): on the real demo capture and on 9 messages sent within 2 ms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

import analyzer
from analyzer import plots, timefmt

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def burst(path: Path) -> analyzer.Analysis:
    """One connection: handshake, then 9 text messages from the client 0.2 ms apart, then a close."""
    conv = Conversation(step=0.0002)
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    for i in range(9):
        conv.send(0, frame(1, f"message {i}".encode(), mask=b"\x01\x02\x03\x04"))
    conv.send(0, frame(8, b"\x03\xe8", mask=b"\x01\x02\x03\x04"))
    conv.send(1, frame(8, b"\x03\xe8"))
    write_pcap(path, conv.packets)
    return analyzer.analyze(path)


def _markers(ax) -> np.ndarray:
    twin = next(other for other in ax.figure.axes if other is not ax)
    return np.concatenate([c.get_offsets()[:, 1] for c in twin.collections])


def test_demo_figures_share_the_capture_start() -> None:
    a = analyzer.analyze(CAPTURES / "demo.pcapng")
    start = timefmt.first_record_ts(CAPTURES / "demo.pcapng")
    assert plots.time_origin(a) == start
    timeline = plots.connection_timeline(a)
    traffic = plots.traffic(a)
    assert timeline.get_xlabel() == traffic.get_xlabel()
    assert start.strftime("%H:%M:%S.%f") in timeline.get_xlabel()
    # conn 1's bar starts where conn 1 started, counted from the capture's first packet
    first = a.connections.sort_values("start").iloc[0]
    left = min(p.get_x() for p in timeline.patches)
    assert left == pytest.approx((first["start"] - start).total_seconds(), abs=1e-6)
    # the traffic's first bucket holds the first frame, on the same axis
    x0 = min(line.get_xdata()[0] for line in traffic.get_lines())
    t_first = (a.frames["ts"].min() - start).total_seconds()
    assert x0 <= t_first < x0 + 1.0
    # 74 s of traffic: 1 s buckets, drawn as rates per second; the markers integrate to the messages
    assert "(1s buckets)" in traffic.get_title()
    assert "per second" in traffic.get_ylabel()
    assert _markers(traffic).sum() == pytest.approx(len(a.messages))


def test_sub_second_capture_draws_counts_not_rates(tmp_path: Path) -> None:
    a = burst(tmp_path / "burst.pcap")
    assert len(a.messages) == 9
    span = (a.messages["ts_end"].max() - a.messages["ts_start"].min()).total_seconds()
    assert span < 0.002
    ax = plots.traffic(a)
    assert "counts, as the buckets are under 1 s" in ax.get_title()
    twin = next(other for other in ax.figure.axes if other is not ax)
    assert "per second" not in ax.get_ylabel() and "per second" not in twin.get_ylabel()
    assert "bucket" in twin.get_ylabel()
    markers = _markers(ax)
    assert markers.sum() == 9 and markers.max() <= 9  # not ~9,000 messages/s
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "client messages" in legend and not any("/s" in t for t in legend)
    # the bytes drawn are the bytes on the wire, per bucket
    total = sum(float(np.sum(line.get_ydata()[:-1])) for line in ax.get_lines())
    assert total == pytest.approx(int((a.frames["payload_len"] + a.frames["header_len"]).sum()))
    # the summary refuses a rate for the same reason
    assert a.summary()["messages_per_second"] is None
    assert "n/a (messages span under 1 s)" in str(a.summary())
    # both time figures count from the capture's first packet (the SYN), not the first frame
    origin = plots.time_origin(a)
    assert origin == timefmt.first_record_ts(tmp_path / "burst.pcap")
    assert plots.connection_timeline(a).get_xlabel() == ax.get_xlabel()
    x0 = min(line.get_xdata()[0] for line in ax.get_lines())
    assert x0 > 0  # the frames came after the TCP and HTTP handshakes
