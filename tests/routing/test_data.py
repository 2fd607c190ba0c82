"""Dataset files and packaged datasets: clear errors, deterministic splits."""

import json

import pytest

from routing.data import DatasetError, Split, load_domain, read_table, split_unsplit


def test_it_reads_csv_and_jsonl(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\n"hello, world",a\nbye,b\n')
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "hello, world", "label": "a"})
        + "\n\n"
        + json.dumps({"text": "bye", "label": "b"})
        + "\n"
    )
    for name in ("d.csv", "d.jsonl"):
        split = read_table(tmp_path / name)
        assert split.texts == ["hello, world", "bye"] and split.labels == ["a", "b"]
    assert read_table(b"text,label\nx,1\ny,2\n", fmt="csv").labels == ["1", "2"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.csv", "body,label\nx,a\n", "missing: text"),
        ("a.csv", "text,label\nx,a\n ,b\n", "line 3: 'text' is empty"),
        ("a.csv", "text,label\nx,a\ny,\n", "line 3: 'label' is empty"),
        ("a.csv", "text,label\nx,a\ny,a\n", "two distinct labels"),
        ("a.csv", "text,label\n", "no examples"),
        ("a.jsonl", '{"text": "x", "label": "a"}\n{oops\n', "line 2: invalid JSON"),
        ("a.jsonl", '["x", "a"]\n', "line 1: expected an object"),
    ],
)
def test_it_says_what_is_wrong_with_a_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError) as info:
        read_table(tmp_path / name)
    assert message in str(info.value)


def test_non_utf8_is_refused(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text,label\n\xff\xfe,a\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_table(tmp_path / "a.csv")


def test_splits_depend_only_on_the_text():
    texts = [f"example number {i}" for i in range(400)]
    labels = ["a", "b"] * 200
    one = split_unsplit("x", Split(texts, labels))
    two = split_unsplit("x", Split(texts[::-1], labels[::-1]))
    for part in ("train", "router", "eval"):
        assert sorted(getattr(one, part).texts) == sorted(getattr(two, part).texts)
    sizes = [len(one.train), len(one.router), len(one.eval)]
    assert sum(sizes) == 400 and 240 < sizes[0] < 320 and 30 < sizes[1] < 90
    assert not set(one.train.texts) & set(one.eval.texts)
    assert one.train.limited(50).texts == two.train.limited(50).texts[::-1]


def test_the_packaged_bbc_dataset_loads_with_its_five_topics():
    bbc = load_domain("bbc")
    assert bbc.labels == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(bbc.train) + len(bbc.router) + len(bbc.eval) == 2225


def test_an_unknown_dataset_names_the_choices():
    with pytest.raises(DatasetError, match="bbc, reuters8, 20news, rotten"):
        load_domain("imdb")
