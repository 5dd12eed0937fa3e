"""The devnet's money, as methods of Devnet (chain/money.py has the rules; docs/devnet.md "Money"):
what the Lotus API server and the manager ask (balances, locked and available funds, deposit and
pledge for a number of sectors, base fee, gas estimate, a message's state) and the admin faucet.
Each method catches the chain up to its clock first, as every Devnet read does."""

from __future__ import annotations

from . import money
from .types import ChainError


class DevnetMoney:
    def message_info(self, message: str) -> dict:
        """What `util message search` shows: the message's own fields (sender, value, gas) and
        its state, or its replacement's (ReplacedBy): FillMsg (in the pool) or OnChainMsg (receipt)."""
        with self._tx():
            head = self._catch_up()
            row = self._message_row(message)
            if row is None:
                raise ChainError(f"message {message} not found")
            m = self.db.execute("SELECT miner, method, sender, value, gas_limit, fee_cap, premium FROM messages WHERE id = ?",
                                (message,)).fetchone()
            n = self.db.execute("SELECT nonce FROM nonces WHERE message = ?", (row[4],)).fetchone()
            fee = money.base_fee(self, head)
        executed = row[0] is not None
        return {"ID": message, "SignedCid": row[4], "ReplacedBy": row[4] if row[4] != message else None, "State": "OnChainMsg" if executed else "FillMsg",
                "Height": row[0] if executed else 0, "Confidence": head - row[0] if executed else 0,
                "Receipt": {"ExitCode": row[1], "Return": None, "GasUsed": row[3] or 0, "Error": row[2]} if executed else None,
                "To": f"f0{m[0]}", "Method": m[1], "From": m[2], "Nonce": n[0] if n else None, "Value": m[3] or "0",
                "GasLimit": m[4] or 0, "GasFeeCap": m[5] or "0", "GasPremium": m[6] or "0", "BaseFee": str(fee)}

    # -------------------------------------------------------------------------- money

    def balance(self, address: str) -> int:
        """An address's balance in attoFIL (Lotus WalletBalance; 0 for an unknown address)."""
        with self._tx():
            self._catch_up()
            return money.balance(self, address)

    def add_balance(self, address: str, amount: int) -> int:
        """Admin (the devnet's faucet): credit `amount` attoFIL to `address`; returns the new balance."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ChainError(f"add_balance: {amount!r} is not a non-negative integer of attoFIL")
        with self._tx():
            self._catch_up()
            money.credit(self, address, amount)
            return money.balance(self, address)

    def available_balance(self, miner: int) -> int:
        """Lotus StateMinerAvailableBalance: balance - deposits - pledges."""
        with self._tx():
            self._catch_up()
            self.miner_info(miner)
            return money.available_balance(self, miner)

    def locked_funds(self, miner: int) -> dict:
        """{"PreCommitDeposits": ..., "InitialPledge": ...} in attoFIL (the miner actor's state)."""
        with self._tx():
            self._catch_up()
            self.miner_info(miner)
            return {"PreCommitDeposits": money._locked(self, miner, "deposit"),
                    "InitialPledge": money._locked(self, miner, "pledge")}

    def precommit_deposit(self, miner: int, sectors: int = 1) -> int:
        """The deposit `sectors` PreCommits of the miner's sector size need now (Lotus
        StateMinerPreCommitDepositForPower, times the count)."""
        with self._tx():
            self._catch_up()
            return sectors * money.precommit_deposit_per_sector(self, self.miner_info(miner).sector_size)

    def initial_pledge(self, miner: int, sectors: int = 1) -> int:
        """The initial pledge `sectors` proven sectors need now (Lotus StateMinerInitialPledgeCollateral)."""
        with self._tx():
            self._catch_up()
            return sectors * money.initial_pledge_per_sector(self, self.miner_info(miner).sector_size)

    def base_fee(self) -> int:
        """The base fee at head, attoFIL per gas unit."""
        with self._tx():
            return money.base_fee(self, self._catch_up())

    def set_base_fee(self, fee: int) -> None:
        """Admin (tests): the base fee from head on (it then follows the chain's fullness)."""
        if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
            raise ChainError(f"set_base_fee: {fee!r} is not a non-negative integer of attoFIL")
        with self._tx():
            money.set_base_fee(self, self._catch_up(), fee)

    def estimate_gas(self, miner: int, method: str, params: dict) -> int:
        """Gas the message would use at head (Lotus GasEstimateGasLimit before its over-estimation)."""
        with self._tx():
            self._catch_up()
            self.miner_info(miner)
            return money.gas_used(self, miner, method, params)
