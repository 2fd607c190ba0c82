"""bench/upload_large.py on a small file: it uploads through gunicorn into a real bucket
and prints its figures."""

from bench.upload_large import main


def test_the_upload_benchmark_stores_the_file_and_prints_its_figures(capsys):
    main(["--size-mib", "16"])
    out = capsys.readouterr().out
    assert "expert files: 1.1 MiB and 16.5 MiB" in out  # rank 4 on the 65536-wide base
    assert "upload of 17 MiB to the bucket" in out
    assert "web worker resident memory" in out and "header check, large / small" in out
