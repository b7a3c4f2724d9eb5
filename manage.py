#!/usr/bin/env python
"""Django's command-line utility: every developer and operator action goes through it.

Each command runs under the SERVICE whose process loads its app: with SERVICE unset, the one that
does (`manage.py strangler serve` is the proxy); with another SERVICE set, it refuses and says which.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.processes import WrongService, service_for_command

    args = sys.argv[1:]
    command = args[1] if args[:1] == ["help"] and len(args) > 1 else (args[0] if args else "")
    if command and not command.startswith("-"):
        try:
            os.environ["SERVICE"] = service_for_command(command, os.environ.get("SERVICE") or None)
        except WrongService as exc:
            sys.stderr.write(f"CommandError: {exc}\n")
            sys.exit(1)
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except BrokenPipeError:
        # Whoever read the output stopped reading (`... | head`): end quietly, as Unix tools do,
        # and keep Python from failing again when it flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


if __name__ == "__main__":
    main()
