"""Stand-in for pybase64 (a faster base64): the standard library's functions, same names and results."""
from base64 import b64decode, b64encode, standard_b64decode, standard_b64encode, urlsafe_b64decode, urlsafe_b64encode

__all__ = ["b64decode", "b64encode", "standard_b64decode", "standard_b64encode", "urlsafe_b64decode",
           "urlsafe_b64encode"]
