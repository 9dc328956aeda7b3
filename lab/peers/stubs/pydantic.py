"""Stand-in for pydantic: only the name BaseModel, for class definitions at import. Making a model raises."""


class BaseModel:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("pydantic is a stand-in here (lab/peers/stubs): install the real package to use models")
