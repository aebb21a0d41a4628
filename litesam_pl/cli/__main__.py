"""``python -m litesam_pl.cli ...``: the ``litesam`` command (``litesam_pl.cli.entry.main``)."""
from litesam_pl.cli.entry import main

if __name__ == "__main__":
    main()
