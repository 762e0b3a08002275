"""Where a job's Celery message is in Redis: waiting in its queue, or held unacked by a consumer.

kombu's Redis transport (5.x) keeps
- a queue as a list named after it (`mail`; priorities 3, 6 and 9 in `mail\\x06\\x163` and so
  on), of JSON messages pushed on the left and popped (BRPOP) on the right;
- every message a consumer took and has not acknowledged yet (running, or reserved by
  prefetch, or waiting for its ETA like a retry) in the hash `unacked`: delivery tag ->
  JSON `[message, exchange, routing_key]`, indexed by time in the sorted set `unacked_index`.
A message carries its task id in `headers.id`; our tasks are sent with the job id as task id.

A message is in neither place only in the instant between BRPOP handing it to a consumer and
kombu writing it into `unacked`; a consumer killed in that instant takes it with it. The job
sweeper uses `missing_messages` to find such jobs and send them again. The script looks at
the lists and the hash in one atomic step, so a message moving from its list to `unacked`
cannot slip between two looks; the caller looks twice, a moment apart, to step over that
instant for a consumer that is alive.
"""
from __future__ import annotations

import time

from shared.celery_config import route_for

PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default priority_steps
SEP = "\x06\x16"  # kombu's separator between a queue and its priority
UNACKED_KEY = "unacked"  # kombu's default `unacked_key` (not overridden in shared.celery_config)

# KEYS: the queue lists to look in, then the unacked hash (last). ARGV: the task ids looked for.
# Returns the ids found. Reads every message of those lists and of the hash once: run it only
# for jobs that should have started long ago.
_FIND = """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local found, n_found = {}, 0
local function look(item)
  for id in string.gmatch(item, '"id": ?"([^"]*)"') do
    if wanted[id] then
      wanted[id] = nil
      n_found = n_found + 1
      found[n_found] = id
    end
  end
end
for i = 1, #KEYS - 1 do
  local len = redis.call('LLEN', KEYS[i])
  local start = 0
  while start < len do
    for _, item in ipairs(redis.call('LRANGE', KEYS[i], start, start + 499)) do look(item) end
    start = start + 500
  end
end
for _, item in ipairs(redis.call('HVALS', KEYS[#KEYS])) do look(item) end
return found
"""


def queue_keys(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{SEP}{p}" for p in PRIORITY_STEPS]


# Above this many messages to read, the look would hold Redis too long (it is one script):
# the jobs count as present, and the REDISPATCH_QUEUED_AFTER fallback covers a lost one.
MAX_SCAN = 20_000


def find_messages(redis_client, queues: list[str], task_ids: list[str]) -> set[str]:
    """Those of `task_ids` whose message waits in one of `queues` or is held unacked by any consumer."""
    if not task_ids:
        return set()
    keys = [k for q in queues for k in queue_keys(q)] + [UNACKED_KEY]
    pipe = redis_client.pipeline(transaction=False)
    for k in keys[:-1]:
        pipe.llen(k)
    pipe.hlen(UNACKED_KEY)
    if sum(pipe.execute()) > MAX_SCAN:
        return set(task_ids)
    found = redis_client.eval(_FIND, len(keys), *keys, *task_ids)
    return {f.decode() if isinstance(f, bytes) else f for f in found}


def present_messages(redis_client, tasks: dict[str, str]) -> set[str]:
    """The task ids (of {task id: task name}) whose message waits in its queue or is held unacked."""
    return find_messages(redis_client, sorted({route_for(name) for name in tasks.values()}), list(tasks))


def missing_messages(redis_client, tasks: dict[str, str], recheck_after: float = 0.5) -> set[str]:
    """The task ids whose message is nowhere in the broker, in two looks `recheck_after` seconds apart."""
    missing = set(tasks) - present_messages(redis_client, tasks)
    if missing and recheck_after > 0:
        time.sleep(recheck_after)
        again = {t: tasks[t] for t in missing}
        missing -= present_messages(redis_client, again)
    return missing

