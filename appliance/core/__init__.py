"""Shared vocabulary of every role: sector ids, sizes, proof types, units."""
