"""Stand-in for IPython.display: HTML and display exist for imports; calling either raises."""


def _absent(*args, **kwargs):
    raise RuntimeError("IPython is a stand-in here (lab/peers/stubs): install the real package to display")


display = _absent


class HTML:
    __init__ = _absent
