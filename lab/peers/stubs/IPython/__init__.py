"""Stand-in for IPython: only IPython.display's names, for imports. Using them raises."""
