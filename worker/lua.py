"""The one Lua loader: every ``.lua`` file in a ``lua/`` folder of worker/, read once, by name.

Each script lives in a ``lua/`` folder of the package that runs it (``worker/store/lua/``,
``worker/execution/lua/``...) and is known by its file name without ``.lua``; names are unique
across the tree, so a script can move to another package without its callers changing.

A script may start with include lines, ``--! include <name>``: the named file's text takes the
line's place (once per script, in order). Shared pieces are written once that way, as the status
names and the terminal check (``statuses.lua``) or the tail of a terminal write (``finished.lua``).

    scripts = Scripts(client, "begin_attempt", "succeed")
    attempt = scripts.run("begin_attempt", keys, args)

Scripts return named results: callers compare with the ``IntEnum`` of their package (for
example :class:`worker.store.Begin`), never with bare integers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from redis.client import Pipeline
from redis.commands.core import Script

__all__ = ["LuaError", "Scripts", "names", "queue_script", "source"]

_INCLUDE = re.compile(r"^--! include ([A-Za-z0-9_]+)[ \t]*$", re.MULTILINE)


class LuaError(LookupError):
    """A script name that no ``lua/`` folder holds, or a name held twice."""


def _lua_dirs(root: Traversable) -> Iterator[Traversable]:
    for entry in root.iterdir():
        if not entry.is_dir() or entry.name.startswith(("_", ".")):
            continue
        if entry.name == "lua":
            yield entry
        else:
            yield from _lua_dirs(entry)


@functools.cache
def _files() -> dict[str, str]:
    """Every script's raw text by name, read once per process."""
    found: dict[str, str] = {}
    for folder in _lua_dirs(resources.files("worker")):
        for f in folder.iterdir():
            if not f.name.endswith(".lua"):
                continue
            name = f.name[: -len(".lua")]
            if name in found:
                raise LuaError(f"two Lua scripts are named {name!r}: names must be unique under worker/")
            found[name] = f.read_text(encoding="utf-8")
    return found


def names() -> list[str]:
    """The names of every script in the tree, sorted."""
    return sorted(_files())


@functools.cache
def source(name: str) -> str:
    """The text of script ``name``, its includes expanded."""
    files = _files()
    if name not in files:
        raise LuaError(f"no Lua script named {name!r} in any lua/ folder of worker/")
    seen: set[str] = {name}

    def expand(match: re.Match[str]) -> str:
        inc = match.group(1)
        if inc in seen:
            return ""
        seen.add(inc)
        if inc not in files:
            raise LuaError(f"{name}.lua includes {inc!r}, which no lua/ folder of worker/ holds")
        return _INCLUDE.sub(expand, files[inc])

    return _INCLUDE.sub(expand, files[name])


class Scripts:
    """The scripts ``script_names`` registered on one Redis client."""

    def __init__(self, client: Any, *script_names: str) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {n: client.register_script(source(n)) for n in script_names}

    def __getitem__(self, name: str) -> Script:
        """The registered script (a redis-py ``Script``, called as ``script(keys=, args=)``)."""
        try:
            return self._scripts[name]  # type: ignore[no-any-return]
        except KeyError:
            raise LuaError(f"script {name!r} is not registered here") from None

    def run(
        self, name: str, keys: Sequence[Any] = (), args: Iterable[Any] = (), *, client: Any = None
    ) -> Any:
        """Run script ``name``; with ``client`` (a pipeline) the call is only queued on it."""
        script = self[name]
        if isinstance(client, Pipeline):
            return queue_script(client, script, keys, args)
        return script(keys=list(keys), args=list(args), client=client)


def queue_script(pipe: Pipeline, script: Script, keys: Sequence[Any], args: Iterable[Any]) -> Pipeline:
    """Queue ``script`` on ``pipe`` as one ``EVALSHA``, as redis-py's ``Script.__call__`` does
    without its per-call layers (a pipeline of :class:`worker.redis_client.AxbPipeline` loads a
    script the server does not know, and sends it again)."""
    pipe.scripts.add(script)
    return pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call,no-any-return]
