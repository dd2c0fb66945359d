"""The one exception type for bad user input; the CLI turns it into a one-line error, exit 2."""


class ConfigError(ValueError):
    """A configuration that cannot be built: the message names the numbers and the valid choices."""
