"""The manager role: the one central service workers pull from (sector numbers, tickets, seeds,
chain submission with batching, persist-store space, state reports). It only answers."""
