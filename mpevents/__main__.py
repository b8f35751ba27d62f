"""``python -m mpevents``: the same as the ``mpevents`` command."""

from ._cli import main_exit

if __name__ == "__main__":
    main_exit()
