"""The dedicated PoSt prover role (`damocles post run -c post.toml`)."""
