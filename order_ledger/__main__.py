"""``python -m order_ledger``: the same command line as ``order-ledger``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="order-ledger")
