"""One name, one meaning: a mixture's `kind` (was `task_type`, as its base model's), an
expert's `architecture` (was `kind`: head or lora), a job's `action` (was `kind`)."""

import experts.models
import routing.kinds
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("experts", "0007_storage_manifests"),
    ]

    operations = [
        migrations.RenameField("basemodel", "task_type", "kind"),
        migrations.AlterField(
            model_name="basemodel",
            name="kind",
            field=models.CharField(
                choices=routing.kinds.choices,
                default=experts.models.default_kind,
                help_text="the kind of mixture it serves: an encoder or a causal LM",
                max_length=30,
            ),
        ),
        migrations.RenameField("mixture", "task_type", "kind"),
        migrations.AlterField(
            model_name="mixture",
            name="kind",
            field=models.CharField(
                choices=routing.kinds.choices,
                default=experts.models.default_kind,
                max_length=30,
            ),
        ),
        migrations.AlterField(
            model_name="mixture",
            name="tolerance",
            field=models.FloatField(
                default=0.02,
                help_text="what a new expert may cost the other domains (its kind says how)",
            ),
        ),
        migrations.RenameField("expert", "kind", "architecture"),
        migrations.RemoveIndex(model_name="job", name="job_status_kind"),
        migrations.RenameField("job", "kind", "action"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["status", "action"], name="job_status_action"),
        ),
    ]
