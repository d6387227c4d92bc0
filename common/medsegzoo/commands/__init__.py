"""Sub-commands of the ``medsegzoo`` console script (one module per command)."""
