"""Which process analyses which TCP connection when several share one capture.

The calling process reads the capture and hands each worker the segments of the connections it
owns (analyzer.handover); `owner` is asked once per segment there. The rule is deterministic, so
processes that each read the whole capture (`keep`, analyze_file(shard=) on a file) decide the
same owners without any talking between them: they see the same segments in the same order.

The rule balances the work: a new connection goes to the process that has been given the fewest
segments so far (ties to the lowest index). A fixed hash of the ports would leave the split to
chance, and with the heavy-tailed connection sizes of real traffic chance is unkind (56/44 % of
the frames on the benchmark capture, so the slower process set the time). Counting what was given
keeps the processes within about one busy connection of each other.

Processes may be weighted: the calling process analyses shard 0 itself while the others first
start a Python process and afterwards hand their rows over, while the calling process also reads
and decodes every record, batches the workers' segments and merges all rows at the end: a
worker's segments count WORKER_WEIGHT times, so that both finish together.

Memory stays bounded: at most MAX_TRACKED connection keys are remembered; past that, a new
connection's owner comes from a hash of its ports (still the same in every process).
"""

from __future__ import annotations

__all__ = ["MAX_TRACKED", "WORKER_WEIGHT", "ConnectionOwners", "hashed_owner", "process_weights"]

MAX_TRACKED = 1 << 18       # connection keys remembered (about 25 MB at most)
#: The weight of a worker process's segments against the calling process's (shard 0). The calling
#: process reads and decodes every record, batches the workers' segments and merges the tables at
#: the end; a worker starts, decodes its batches and saves its rows. Measured on the 100k benchmark
#: capture (analyzer.handover, a busy machine): at 1.1 the calling process took 4.2-4.4 s of CPU
#: against its worker's 2.7; at 0.5 (the worker given about two thirds of the segments) 3.2-3.4 s
#: against 2.8-3.0.
WORKER_WEIGHT = 0.5


def hashed_owner(sport: int, dport: int, shards: int) -> int:
    """A fixed owner from the two ports, the same both ways. (A plain sum would not do: Linux
    gives connect() even ports, so the parity follows the server port.)"""
    return ((((sport ^ dport) * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % shards


def process_weights(shards: int) -> tuple[float, ...]:
    """Shard 0 is the calling process's, the others are worker processes' (analyzer.api)."""
    return (1.0,) + (WORKER_WEIGHT,) * (shards - 1)


class ConnectionOwners:
    """`keep(sport, dport)` for a PacketDecoder: is this segment's connection ours?

    The key is the unordered port pair: the two directions of a connection share it, and two
    connections that share it (same ports on other hosts, or a reused port pair) simply share an
    owner, which every process agrees on.
    """

    __slots__ = ("_load", "_mine", "_owner", "_shards", "_weights")

    def __init__(self, shards: int, mine: int, weights: tuple[float, ...] | None = None) -> None:
        self._shards = shards
        self._mine = mine
        self._owner: dict[int, int] = {}
        self._load = [0] * shards        # segments given to each process so far
        self._weights = weights if weights is not None else (1.0,) * shards

    def keep(self, sport: int, dport: int) -> bool:
        return self.owner(sport, dport) == self._mine

    def owner(self, sport: int, dport: int) -> int:
        """The process that analyses this segment's connection (the segment is counted)."""
        key = (sport << 16 | dport) if sport < dport else (dport << 16 | sport)
        owner = self._owner.get(key)
        if owner is None:
            owners = self._owner
            if len(owners) < MAX_TRACKED:
                weighted = [load * weight for load, weight in zip(self._load, self._weights)]
                owner = owners[key] = weighted.index(min(weighted))
            else:
                owner = hashed_owner(sport, dport, self._shards)
        self._load[owner] += 1
        return owner

    @property
    def load(self) -> list[int]:
        """Segments given to each process so far."""
        return list(self._load)
