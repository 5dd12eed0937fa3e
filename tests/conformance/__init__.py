"""Conformance with Damocles: requests as its Rust worker and Go CLI send them, answers as Go writes them."""
