"""SectorID: a miner's actor id and a sector number, as Damocles' wire format spells it."""

from __future__ import annotations

from dataclasses import dataclass

MAX_U64 = (1 << 64) - 1


@dataclass(frozen=True, order=True)
class SectorID:
    miner: int
    number: int

    def __post_init__(self) -> None:
        for field, value in (("Miner", self.miner), ("Number", self.number)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U64:
                raise ValueError(f"invalid SectorID {field}: {value!r} is not an unsigned 64-bit integer")

    @property
    def prover_id(self) -> bytes:
        """The ID address payload of the miner (uvarint of the actor id), zero-padded to 32 bytes."""
        return uvarint(self.miner).ljust(32, b"\0")

    def to_json(self) -> dict:
        return {"Miner": self.miner, "Number": self.number}

    @classmethod
    def from_json(cls, obj: object) -> "SectorID":
        if not isinstance(obj, dict) or set(obj) != {"Miner", "Number"}:
            raise ValueError(f"invalid SectorID {obj!r}: expected {{\"Miner\": int, \"Number\": int}}")
        return cls(obj["Miner"], obj["Number"])

    def __str__(self) -> str:
        return sector_name(self.miner, self.number)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sector_name(miner: int, number: int) -> str:
    """A sector's name, Filecoin's and Damocles': its sealed file and cache directory are called
    this, and logs, listings and the status page show it. s-t0<miner>-<number>."""
    return f"s-t0{miner}-{number}"


def parse_sector_name(text: str) -> tuple[int, int]:
    """'1000-5' or 's-t01000-5' -> (1000, 5); ValueError naming the text otherwise."""
    t = text[4:] if text.startswith("s-t0") else text
    try:
        miner, number = (int(x) for x in t.split("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not a sector id like 1000-5 or s-t01000-5") from None
    if miner < 0 or number < 0:
        raise ValueError(f"{text!r} is not a sector id like 1000-5 or s-t01000-5")
    return miner, number
