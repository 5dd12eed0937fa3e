"""A Lotus/Venus full-node client behind the Chain interface (docs/chain.md): endpoint forms
(endpoint.py), JSON-RPC transport (client.py), Lotus' JSON shapes (shapes.py), messages and
their sending policy (message.py), and LotusChain itself (chain.py)."""
