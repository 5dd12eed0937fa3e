"""The worker role: sealing threads that each own one local store and pull their work from the
manager, running every step of a sector on this machine."""
