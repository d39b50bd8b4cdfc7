"""The exception mlflow raises, so that scripts can catch it by its name."""


class MlflowException(Exception):
    """A call that cannot be done: bad input, or what Outpost's stand-in
    for mlflow does not do."""

    def __init__(self, message, error_code="INVALID_PARAMETER_VALUE", **kwargs):
        super().__init__(message)
        self.message = str(message)
        self.error_code = error_code
        self.json_kwargs = kwargs

    def __str__(self):
        return self.message
