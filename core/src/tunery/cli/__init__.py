"""The `tunery` command line: `up`/`down`/`status`/`serve` for processes, subcommands per service for data."""
