"""``python -m bench``: every registered benchmark beside its baseline, one dated result and table (``make bench``)."""

from bench.runner import app

if __name__ == "__main__":
    app(prog_name="python -m bench")
