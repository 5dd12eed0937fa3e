"""JSON-RPC 2.0 over HTTP (`POST /rpc/v0`), wire-compatible with Damocles' manager API where the
concepts match: namespace `Venus.`, positional params, PascalCase keys. Unlike Damocles, every
request carries `Authorization: Bearer <token>` (see auth.py)."""


class RPCError(Exception):
    """An error answer: JSON-RPC code and message (the message names the offending field)."""

    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


# JSON-RPC 2.0 codes, and Damocles' own
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32001     # missing, invalid or insufficient token (HTTP 401 / 403 too)
SECTOR_NOT_FOUND = 11001  # Damocles: the manager knows no such sector
JOB_NOT_FOUND = 11002     # ours: no such WindowPoSt job, or it is no longer running
STANDBY = 11003           # ours: a standby manager; its data names the active one ({"Active": address})
