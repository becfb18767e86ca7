"""Sub-commands of the ``surgifuse`` CLI, one module each (see ``surgifuse.cli``)."""
