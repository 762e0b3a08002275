"""Whether a job's Celery message still waits in its queue in Redis.

kombu's Redis transport (5.x) keeps a queue as a list named after it (`mail`; priorities 3,
6 and 9 in `mail\\x06\\x163` and so on) of JSON messages pushed on the left and popped
(BRPOP) on the right; a message carries its task id in `headers.id`, and our tasks are sent
with the job id as task id. A message a consumer took and has not acknowledged sits in the
hash `unacked` until it is acked, or restored after the visibility timeout (hours).

A job still `queued` REQUEUE_LOST_AFTER after it was sent, whose message no longer waits in
its queue, was taken by a consumer that never claimed it: a live worker claims a job within
milliseconds of taking its message (acks_late with prefetch multiplier 1: a worker holds
only the messages it runs). That consumer died, either before kombu recorded the message in
`unacked` (the message is gone) or after (it sits in `unacked` until the visibility timeout,
with nobody to run it). Either way the job sweeper sends it again; the claim is atomic, so
should the first copy ever run, it finds the job taken. A retry waiting for its ETA is held
by a live worker, and the sweeper does not ask about it before that time (`dispatched_at` is
set to the ETA). The caller looks twice, a moment apart, so that a message taken by a live
consumer just now shows as claimed in the database by the second look.
"""
from __future__ import annotations

import time

from shared.celery_config import route_for

PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default priority_steps
SEP = "\x06\x16"  # kombu's separator between a queue and its priority

# KEYS: the queue lists to look in. ARGV: the task ids looked for. Returns the ids found.
# Reads every message of those lists once: run it only for jobs that should have started.
_FIND = """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local found, n_found = {}, 0
for i = 1, #KEYS do
  local len = redis.call('LLEN', KEYS[i])
  local start = 0
  while start < len do
    for _, item in ipairs(redis.call('LRANGE', KEYS[i], start, start + 499)) do
      for id in string.gmatch(item, '"id": ?"([^"]*)"') do
        if wanted[id] then
          wanted[id] = nil
          n_found = n_found + 1
          found[n_found] = id
        end
      end
    end
    start = start + 500
  end
end
return found
"""

# Above this many messages to read, the look would hold Redis too long (it is one script):
# the jobs count as waiting, and the REDISPATCH_QUEUED_AFTER fallback covers a lost one.
MAX_SCAN = 20_000


def queue_keys(queue: str) -> list[str]:
    """Return the Redis lists that hold a queue's messages, one per priority step."""
    return [queue if p == 0 else f"{queue}{SEP}{p}" for p in PRIORITY_STEPS]


def find_waiting(redis_client, queues: list[str], task_ids: list[str]) -> set[str]:
    """Those of `task_ids` whose message waits in one of `queues` (not yet taken by a consumer)."""
    if not task_ids:
        return set()
    keys = [k for q in queues for k in queue_keys(q)]
    pipe = redis_client.pipeline(transaction=False)
    for k in keys:
        pipe.llen(k)
    if sum(pipe.execute()) > MAX_SCAN:
        return set(task_ids)
    found = redis_client.eval(_FIND, len(keys), *keys, *task_ids)
    return {f.decode() if isinstance(f, bytes) else f for f in found}


def waiting_messages(redis_client, tasks: dict[str, str]) -> set[str]:
    """The task ids (of {task id: task name}) whose message waits in its queue."""
    return find_waiting(redis_client, sorted({route_for(name) for name in tasks.values()}), list(tasks))


def taken_messages(redis_client, tasks: dict[str, str], recheck_after: float = 0.5) -> set[str]:
    """The task ids whose message no longer waits in its queue, in two looks `recheck_after` apart."""
    taken = set(tasks) - waiting_messages(redis_client, tasks)
    if taken and recheck_after > 0:
        time.sleep(recheck_after)
        taken -= waiting_messages(redis_client, {t: tasks[t] for t in taken})
    return taken
