"""What the operator asks about proving (`damocles util proving ...`): the current deadline and
power, the 48 deadlines with their partitions, one deadline in detail with the poster's round,
faulty sectors, and a pre-check of sectors' files as the poster does it."""

from __future__ import annotations

from dataclasses import asdict

from ..chain.types import ChainError
from ..rpc import INVALID_PARAMS, RPCError


class Proving:
    def __init__(self, chain, poster):
        self.chain, self.poster = chain, poster

    def _miner(self, miner: int):
        try:
            return self.chain.miner_info(miner)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None

    def info(self, miner: int) -> dict:
        self._miner(miner)
        dl = self.chain.proving_deadline(miner)
        power = self.chain.miner_power(miner)
        return {"Miner": miner, "CurrentEpoch": dl.current_epoch, "PeriodStart": dl.period_start, "Deadline": asdict(dl),
                "Power": asdict(power), "Faults": sum(len(p.faulty) for d in range(self.chain.policy.wpost_period_deadlines)
                                                      for p in self.chain.deadline_partitions(miner, d))}

    def deadlines(self, miner: int) -> list[dict]:
        self._miner(miner)
        dl = self.chain.proving_deadline(miner)
        out = []
        for index in range(self.chain.policy.wpost_period_deadlines):
            parts = self.chain.deadline_partitions(miner, index)
            r = self.poster.round(miner, dl.period_start, index)
            out.append({"Index": index, "Partitions": len(parts), "Sectors": sum(len(p.sectors) for p in parts),
                        "Faulty": sum(len(p.faulty) for p in parts), "Recovering": sum(len(p.recovering) for p in parts),
                        "Current": index == dl.index, "Round": r.get("state")})
        return out

    def deadline(self, miner: int, index: int) -> dict:
        self._miner(miner)
        if index >= self.chain.policy.wpost_period_deadlines:
            raise RPCError(INVALID_PARAMS, f"index: there are {self.chain.policy.wpost_period_deadlines} deadlines (0..47), got {index}")
        dl = self.chain.proving_deadline(miner)
        period = dl.period_start
        rounds = [{k: v for k, v in r.items() if k != "proof"} for r in self.poster.rounds(miner) if r["Deadline"] == index]
        current = next((r for r in rounds if r["PeriodStart"] == period), {})
        return {"Index": index, "PeriodStart": period,
                "Partitions": [{"Index": p.index, "Sectors": list(p.sectors), "Faulty": list(p.faulty),
                                "Recovering": list(p.recovering)} for p in self.chain.deadline_partitions(miner, index)],
                "Round": current, "Rounds": rounds[-3:]}     # this period's round, and the last three

    def faults(self, miner: int) -> list[dict]:
        self._miner(miner)
        out = []
        for index in range(self.chain.policy.wpost_period_deadlines):
            for p in self.chain.deadline_partitions(miner, index):
                out += [{"Deadline": index, "Partition": p.index, "Sector": n, "Recovering": n in p.recovering}
                        for n in p.faulty]
        return out

    def check(self, miner: int, index: int | None) -> list[dict]:
        """Pre-check every sector (of one deadline, or all): {Sector, Deadline, Partition, Ok, Error}."""
        self._miner(miner)
        deadlines = [index] if index is not None else range(self.chain.policy.wpost_period_deadlines)
        out = []
        for d in deadlines:
            for p in self.chain.deadline_partitions(miner, d):
                bad = self.poster.check(miner, self.poster.targets(miner, p.sectors))
                out += [{"Sector": n, "Deadline": d, "Partition": p.index, "Ok": n not in bad, "Error": bad.get(n, "")}
                        for n in p.sectors]
        return out
