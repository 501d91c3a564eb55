"""The `fleet` command line: thin commands that own the transaction and call the engine."""
