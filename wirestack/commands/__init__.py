"""The commands behind the CLI: the pipeline of a run, read, shell, wireshark."""
