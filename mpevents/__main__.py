"""``python -m mpevents``: the same as the ``mpevents`` command."""

from mpevents._cli import main_exit

if __name__ == "__main__":
    main_exit()
