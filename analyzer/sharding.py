"""Which process analyses which TCP connection when several share one capture.

Every process reads the whole capture and keeps only the segments of the connections it owns. The
owner of a connection is decided at its first segment, identically in every process without any
talking between them: they all see the same segments in the same order and run the same rule.

The rule balances the work: a new connection goes to the process that has been given the fewest
segments so far (ties to the lowest index). A fixed hash of the ports would leave the split to
chance, and with the heavy-tailed connection sizes of real traffic chance is unkind (56/44 % of
the frames on the benchmark capture, so the slower process set the time). Counting what was given
keeps the processes within about one busy connection of each other.

Memory stays bounded: at most MAX_TRACKED connection keys are remembered; past that, a new
connection's owner comes from a hash of its ports (still the same in every process).
"""

from __future__ import annotations

__all__ = ["MAX_TRACKED", "ConnectionOwners", "hashed_owner"]

MAX_TRACKED = 1 << 18       # connection keys remembered (about 25 MB at most)


def hashed_owner(sport: int, dport: int, shards: int) -> int:
    """A fixed owner from the two ports, the same both ways. (A plain sum would not do: Linux
    gives connect() even ports, so the parity follows the server port.)"""
    return ((((sport ^ dport) * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % shards


class ConnectionOwners:
    """`keep(sport, dport)` for a PacketDecoder: is this segment's connection ours?

    The key is the unordered port pair: the two directions of a connection share it, and two
    connections that share it (same ports on other hosts, or a reused port pair) simply share an
    owner, which every process agrees on.
    """

    __slots__ = ("_load", "_mine", "_owner", "_shards")

    def __init__(self, shards: int, mine: int) -> None:
        self._shards = shards
        self._mine = mine
        self._owner: dict[int, int] = {}
        self._load = [0] * shards        # segments given to each process so far

    def keep(self, sport: int, dport: int) -> bool:
        key = (sport << 16 | dport) if sport < dport else (dport << 16 | sport)
        owner = self._owner.get(key)
        if owner is None:
            owners = self._owner
            if len(owners) < MAX_TRACKED:
                load = self._load
                owner = owners[key] = load.index(min(load))
            else:
                owner = hashed_owner(sport, dport, self._shards)
        self._load[owner] += 1
        return owner == self._mine

    @property
    def load(self) -> list[int]:
        """Segments given to each process so far."""
        return list(self._load)
