"""One error type for bad input, raised before any training starts."""


class FrkitInputError(ValueError):
    """Bad params, data or model input. The message names the file / column / key / value and what was expected."""
