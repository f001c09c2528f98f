"""``python -m bench``: the batch-layer benchmarks with their defaults (``make bench`` runs them all)."""

from bench import preprocess_engines, train_throughput


def main() -> None:
    preprocess_engines.main()
    train_throughput.main()


if __name__ == "__main__":
    main()
