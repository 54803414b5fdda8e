"""The error of the user API: bad user input, named in one line."""


class InputError(ValueError):
    """Bad user input (file, folder, config, checkpoint, option); the message names it."""
