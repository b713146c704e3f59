"""``prep-es replay``: an aggregate's history and the state rebuilt from it."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from prep_es.cli.terminal import EXIT_OK, print_json
from prep_es.services.runtime import open_runtime
from prep_es.store.replay import AggregateReplay, format_timestamp, replay_aggregate
from prep_es.store.settings import Settings


def run_replay(arguments: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    try:
        replayed = replay_aggregate(
            runtime.app, arguments.aggregate_id, version=arguments.version, as_of=arguments.as_of
        )
    finally:
        runtime.close()
    if arguments.json:
        print_json(replayed)
    else:
        print("\n".join(describe_replay(replayed)))
    return EXIT_OK


def describe_replay(replayed: AggregateReplay) -> list[str]:
    """A replay as lines of text: a heading, one block per event, then the state. A
    personal field whose subject was erased reads ``null``, and its block names it."""
    point = f"version {replayed.version} of {replayed.latest_version}"
    if replayed.as_of is not None:
        point += f", as of {format_timestamp(replayed.as_of)}"
    lines = [f"{replayed.aggregate_type} {replayed.aggregate_id} ({point})", "", "History:"]
    for event in replayed.events:
        actor = "no actor" if event.actor_id is None else f"{event.actor_id} ({event.actor_role})"
        lines.append(f"  v{event.version}  {format_timestamp(event.timestamp)}  {event.topic}")
        lines.append(f"      actor: {actor}")
        lines.append(f"      request: {event.request_id}  correlation: {event.correlation_id}")
        for name, value in event.payload.items():
            lines.append(f"      {name}: {_inline(value)}")
        if event.erased:
            lines.append(f"      erased: {', '.join(event.erased_fields)}")
    lines += ["", f"State at version {replayed.version}:"]
    state = orjson.dumps(replayed.state, option=orjson.OPT_INDENT_2).decode()
    lines.extend(f"  {line}" for line in state.splitlines())
    if replayed.erased:
        lines.append(f"  erased: {', '.join(replayed.erased_fields)}")
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
