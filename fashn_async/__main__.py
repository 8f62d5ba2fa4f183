"""``python -m fashn_async``: the command line (see ``fashn_async.cli``)."""

from fashn_async.cli import main

if __name__ == "__main__":
    main()
