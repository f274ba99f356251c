"""The `mmsae` command line: parsing and printing only."""
