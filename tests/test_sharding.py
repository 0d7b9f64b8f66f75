"""analyzer.sharding: every process decides the same owner for every connection, and the work is
shared evenly."""

from __future__ import annotations

import random

import analyzer.sharding as sharding
from analyzer.sharding import ConnectionOwners, hashed_owner


def _segments(seed: int, connections: int = 400, concurrent: int = 50) -> list[tuple[int, int]]:
    """(sport, dport) of the segments of connections of heavy-tailed sizes, `concurrent` open at
    a time, each replaced by a new one when it ends (as the benchmark capture), both directions."""
    rng = random.Random(seed)
    ports = iter(rng.sample(range(32768, 61000), connections))
    open_conns = [[next(ports), min(3000, int(rng.lognormvariate(5, 1.2)))] for _ in range(concurrent)]
    started = concurrent
    segments = []
    while open_conns:
        conn = rng.choice(open_conns)
        segments.append((conn[0], 8080) if conn[1] % 2 else (8080, conn[0]))
        conn[1] -= 1
        if conn[1] <= 0:
            open_conns.remove(conn)
            if started < connections:
                open_conns.append([next(ports), min(3000, int(rng.lognormvariate(5, 1.2)))])
                started += 1
    return segments


def test_exactly_one_process_keeps_each_segment():
    for shards in (2, 3, 4):
        owners = [ConnectionOwners(shards, k) for k in range(shards)]
        for sport, dport in _segments(1):
            kept = [o.keep(sport, dport) for o in owners]
            assert kept.count(True) == 1


def test_both_directions_of_a_connection_have_one_owner():
    owners = ConnectionOwners(2, 0)
    first = owners.keep(40000, 9000)
    assert all(owners.keep(9000, 40000) == first for _ in range(5))
    assert all(owners.keep(40000, 9000) == first for _ in range(5))


def test_new_connections_go_to_the_least_loaded_process():
    owners = ConnectionOwners(2, 0)
    assert owners.keep(40000, 9000)             # first connection: process 0
    for _ in range(10):
        owners.keep(40000, 9000)                # process 0 now has 11 segments
    assert not owners.keep(40001, 9000)         # the next two new ones go to process 1
    assert not owners.keep(40002, 9000)
    assert owners.load == [11, 2]


def test_work_is_shared_evenly_where_a_port_hash_is_not():
    """On heavy-tailed connection sizes the loads stay within a few percent of each other; a
    fixed hash of the ports leaves them to chance."""
    ours, hashed = [], []
    for seed in range(8):
        segments = _segments(seed)
        owners = ConnectionOwners(2, 0)
        by_hash = [0, 0]
        for sport, dport in segments:
            owners.keep(sport, dport)
            by_hash[hashed_owner(sport, dport, 2)] += 1
        ours.append(abs(owners.load[0] - owners.load[1]) / len(segments))
        hashed.append(abs(by_hash[0] - by_hash[1]) / len(segments))
    assert max(ours) < 0.08, ours
    assert sum(ours) < sum(hashed) / 2, (ours, hashed)


def test_memory_is_bounded_and_decisions_stay_consistent(monkeypatch):
    monkeypatch.setattr(sharding, "MAX_TRACKED", 50)
    owners = [ConnectionOwners(2, k) for k in range(2)]
    for port in range(1000, 1200):
        for sport, dport in ((port, 80), (80, port), (port, 80)):
            kept = [o.keep(sport, dport) for o in owners]
            assert kept.count(True) == 1
    assert all(len(o._owner) == 50 for o in owners)
    # past the limit the owner comes from the port hash, the same way in both directions
    assert owners[0].keep(1150, 80) == (hashed_owner(1150, 80, 2) == 0) == owners[0].keep(80, 1150)


def test_weighted_processes_share_in_proportion():
    """A worker's segments weigh WORKER_WEIGHT: it is given in inverse proportion (more when the
    weight is below 1), and every process still agrees on every owner."""
    weights = sharding.process_weights(2)
    assert weights == (1.0, sharding.WORKER_WEIGHT) and sharding.WORKER_WEIGHT != 1
    ratios = []
    for seed in range(6):
        owners = [ConnectionOwners(2, k, weights) for k in range(2)]
        for sport, dport in _segments(seed):
            assert [o.keep(sport, dport) for o in owners].count(True) == 1
        load = owners[0].load
        ratios.append(load[0] / load[1])
    assert all((r > 1) == (sharding.WORKER_WEIGHT > 1) for r in ratios), ratios
    # the ends of the last connections blur each run, the weight shows on average
    assert abs(sum(ratios) / len(ratios) - sharding.WORKER_WEIGHT) < 0.08, ratios
