"""The one error base of the project's tools and servers.

Every failure a user can act on (a port taken, a server that did not come up,
a bad setting, a broken archive) is a FizbuzError or a subclass kept by the room
that raises it (LifecycleError, FleetError, NginxError, ...). Command lines catch
FizbuzError alone and print it as one line with its exit code, never a
traceback; anything else is a bug and keeps its traceback.

Request errors inside the model server are not here: the handler's codec
(fizbuz_codec.InvalidInput) ships alone in the .mar and answers 400s itself.
"""


class FizbuzError(Exception):
    """A failure the user can act on: printed as one line, exit status `exit_code`."""

    exit_code = 1


class UsageError(FizbuzError):
    """A command line or setting the program cannot use (exit 2, like argparse)."""

    exit_code = 2


class SettingError(UsageError):
    """A setting's value from the environment or a flag is not valid."""
