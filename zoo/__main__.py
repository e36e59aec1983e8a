"""``python -m zoo``: the same CLI as the ``zoo`` script, for environments without its entry point."""

from .cli import main

if __name__ == "__main__":
    main()
