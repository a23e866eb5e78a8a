"""Recolor with Palette: data preparation, training and the quality benchmark."""


class TrainingError(ValueError):
    """A problem with the arguments or the files given (the message says which).
    `python -m training` prints it as `training: <message>` and exits with status 2."""
