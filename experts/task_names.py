"""The names of the Celery tasks and their queues, in one place: the web process sends
tasks by name and never imports the worker's modules (or their heavy dependencies);
the worker registers its tasks under these names; beat schedules one of them."""

from routing.kinds import KINDS, describe

VALIDATE = "workers.tasks.validate_expert"
VALIDATE_ANCHOR = "workers.tasks.validate_anchor"
RETRAIN = "workers.tasks.retrain_gate"
PUBLISH = "workers.tasks.publish_composition"
EXPORT = "workers.tasks.export_composition"
GGUF = "workers.tasks.write_gguf"
GENERATE = "workers.tasks.generate_text"
RECOVER = "workers.tasks.recover_jobs"

QUEUES = {
    VALIDATE: "validation",
    VALIDATE_ANCHOR: "validation",
    RETRAIN: "training",
    PUBLISH: "publishing",
    EXPORT: "publishing",
    GGUF: "publishing",
    GENERATE: "default",
    RECOVER: "default",
}
# A kind may send every job of its mixtures to a queue of its own (language models: "lm",
# which GPU workers take while CPU workers keep classification flowing).
ALL_QUEUES = tuple(
    dict.fromkeys(["default", *QUEUES.values(), *(i.queue for i in KINDS.values() if i.queue)])
)


def queue_for(task: str, kind: str | None) -> str:
    """The queue of a task run for a mixture of this kind."""
    return (describe(kind).queue if kind else None) or QUEUES[task]
