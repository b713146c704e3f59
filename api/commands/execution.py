"""What every command route does once it has built its command: run the handler in a
worker thread (handlers block on the event store), put the position its events reached
on the response (``X-Prep-Position``), and answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.schemas import record_position
from commands.context import CommandContext
from commands.processor import Executed

CommandT = TypeVar("CommandT")
ResultT = TypeVar("ResultT", bound=BaseModel)
AnswerT = TypeVar("AnswerT")


async def execute(
    handler: Callable[[CommandT, CommandContext], Executed[ResultT]],
    command: CommandT,
    context: CommandContext,
    response: Response,
    answer: Callable[[ResultT, int], AnswerT],
) -> AnswerT:
    """The route's answer: ``answer(result, position)``, the position also in the
    response's ``X-Prep-Position``."""
    executed = await run_in_threadpool(handler, command, context)
    return answer(executed.result, record_position(response, executed.position))


async def execute_without_content(
    handler: Callable[[CommandT, CommandContext], Executed[ResultT]],
    command: CommandT,
    context: CommandContext,
) -> Response:
    """A 204 answer, its only news the position in ``X-Prep-Position``."""
    executed = await run_in_threadpool(handler, command, context)
    response = Response(status_code=204)
    record_position(response, executed.position)
    return response
