"""``prep-es users create``: a user of any role, with their account."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Final
from uuid import uuid4

from commands.context import CommandContext
from commands.users import CreateUser
from prep_es.cli.terminal import EXIT_OK, print_json
from prep_es.services.runtime import open_runtime
from prep_es.store.settings import Settings

PASSWORD_FROM_STDIN: Final = "-"


def _cli_context() -> CommandContext:
    """Operators at a terminal are no user: no actor, a request id that says "cli"."""
    return CommandContext(actor=None, request_id=f"cli-{uuid4().hex}")


def _read_password(argument: str) -> str:
    if argument != PASSWORD_FROM_STDIN:
        return argument
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def run_users_create(arguments: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(arguments.password)
    email: str = arguments.email
    full_name: str = arguments.full_name or email.partition("@")[0]
    runtime = open_runtime(settings)
    try:
        executed = runtime.commands.users.create_user(
            CreateUser(email=email, password=password, full_name=full_name, role=arguments.role),
            _cli_context(),
        )
    finally:
        runtime.close()
    user = executed.result
    if arguments.json:
        print_json({**user.model_dump(mode="json"), "position": executed.position})
    else:
        print(f"created user {user.id}")
        print(f"  email:     {user.email}")
        print(f"  role:      {user.role}")
        print(f"  full name: {user.full_name}")
        print(f"  account:   {user.account_id}")
    return EXIT_OK
