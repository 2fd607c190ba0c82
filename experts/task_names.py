"""The names of the Celery tasks and their queues, in one place: the web process sends
tasks by name and never imports the worker's modules (or their heavy dependencies);
the worker registers its tasks under these names; beat schedules one of them."""

VALIDATE = "workers.tasks.validate_expert"
RETRAIN = "workers.tasks.retrain_gate"
PUBLISH = "workers.tasks.publish_composition"
EXPORT = "workers.tasks.export_composition"
GENERATE = "workers.tasks.generate_text"
RECOVER = "workers.tasks.recover_jobs"

QUEUES = {
    VALIDATE: "validation",
    RETRAIN: "training",
    PUBLISH: "publishing",
    EXPORT: "publishing",
    GENERATE: "lm",
    RECOVER: "default",
}
# Language-model work is heavier: every job of a language-model mixture goes to its own
# queue, which GPU workers take while CPU workers keep classification flowing.
LM_QUEUE = "lm"
ALL_QUEUES = ("default", "validation", "training", "publishing", LM_QUEUE)


def queue_for(task: str, task_type: str) -> str:
    """The queue of a task run for a mixture of this kind."""
    return LM_QUEUE if task_type == "causal-lm" else QUEUES[task]
