"""The names of the Celery tasks and their queues, in one place: the web process sends
tasks by name and never imports the worker's modules (or their heavy dependencies);
the worker registers its tasks under these names; beat schedules one of them."""

VALIDATE = "workers.tasks.validate_expert"
RETRAIN = "workers.tasks.retrain_gate"
PUBLISH = "workers.tasks.publish_composition"
EXPORT = "workers.tasks.export_composition"
RECOVER = "workers.tasks.recover_jobs"

QUEUES = {
    VALIDATE: "validation",
    RETRAIN: "training",
    PUBLISH: "publishing",
    EXPORT: "publishing",
    RECOVER: "default",
}
