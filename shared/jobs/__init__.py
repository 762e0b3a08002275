"""Jobs: the contract the API and the workers share.

- `shared.jobs.lifecycle`: the state machine; every write of a job's state (read it first).
- `shared.jobs.events`: the event names and the terminal event of each final state.
- `shared.jobs.stream`: a job's event stream in Redis (publish, read, the cancel flag).
- `shared.jobs.publisher`: the process's batched writer of events to those streams.
- `shared.jobs.kinds`: the kinds, their tasks, sending a task message.
- `shared.jobs.holders`: which worker process holds a running job.

The names callers use are exported here.
"""
from shared.jobs.events import FINAL_EVENTS, TERMINAL_EVENTS, Event, final_event
from shared.jobs.kinds import KIND_TASKS, celery_client, send
from shared.jobs.lifecycle import (
    CANCEL_ERROR,
    Claimed,
    Created,
    JobLimitExceeded,
    cancel,
    claim,
    dispatch,
    fail,
    new_job,
    progress,
    purge,
    redispatch,
    renew,
    retry,
    settle_cancel,
    succeed,
)

__all__ = ["CANCEL_ERROR", "FINAL_EVENTS", "KIND_TASKS", "TERMINAL_EVENTS", "Claimed", "Created", "Event",
           "JobLimitExceeded", "cancel", "celery_client", "claim", "dispatch", "fail", "final_event", "new_job",
           "progress", "purge", "redispatch", "renew", "retry", "send", "settle_cancel", "succeed"]
