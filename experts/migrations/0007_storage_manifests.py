"""Compositions stored before the hub kept its files in a storage (local or a bucket):
write the manifests that mark their files (and their exports) as stored, so they read as
before. Only local folders can predate this; a bucket starts with manifests."""


from django.db import migrations, models


def write_manifests(apps, schema_editor):
    from experts.services.blobs import local_path
    from experts.services.storage import EXPORT_MANIFEST, MANIFEST, _manifest_of, put_json

    Composition = apps.get_model("experts", "Composition")
    for composition in Composition.objects.exclude(folder="").select_related("mixture"):
        folder = local_path(composition.folder)
        if folder is None or not folder.is_dir() or (folder / MANIFEST).exists():
            continue
        zip_name = f"{composition.mixture.slug}-v{composition.version}.zip"
        files = _manifest_of(folder)
        own = {n: e for n, e in files.items() if not n.startswith("hf/") and n != zip_name}
        put_json(f"{composition.folder}/{MANIFEST}", {"files": own})
        export = {n: e for n, e in files.items() if n not in own}
        if zip_name in export and "hf/config.json" in export:
            put_json(f"{composition.folder}/{EXPORT_MANIFEST}", {"files": export})


class Migration(migrations.Migration):
    dependencies = [("experts", "0006_causal_lm")]

    operations = [
        migrations.AlterField(
            model_name="composition",
            name="folder",
            field=models.CharField(blank=True, help_text="prefix in the storage", max_length=300),
        ),
        migrations.RunPython(write_manifests, migrations.RunPython.noop),
    ]
