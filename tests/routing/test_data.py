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


# --- bounds and hostile files: a DatasetError that says the limit and what was found -----


def test_a_line_nesting_without_end_is_refused_by_the_strict_reader():
    from routing.kinds.causal_lm.corpora import read_texts

    nested = b"[" * 100_000 + b"]" * 100_000
    labelled = b'{"text": "x", "label": "a"}\n' + nested + b"\n"
    with pytest.raises(DatasetError, match="line 2: invalid JSON .*nests too deeply"):
        read_table(labelled, fmt="jsonl")
    with pytest.raises(DatasetError, match="notes.jsonl line 1: invalid JSON .*nests too deeply"):
        read_texts(nested + b"\n", "notes.jsonl")


def test_a_csv_field_over_the_limit_says_which_line_and_the_limit():
    data = b"text,label\nshort,a\n" + b"x" * 5_000_000 + b",b\n"
    with pytest.raises(DatasetError) as info:
        read_table(data, fmt="csv")
    assert "line 3" in str(info.value) and "longer than 131,072 characters" in str(info.value)


def test_a_text_over_the_limit_is_refused_with_its_length():
    from routing.data import MAX_TEXT_CHARS
    from routing.kinds.causal_lm.corpora import read_texts

    long = "y" * (MAX_TEXT_CHARS + 1)
    rows = (
        json.dumps({"text": "ok", "label": "a"}) + "\n" + json.dumps({"text": long, "label": "b"})
    )
    with pytest.raises(DatasetError, match="line 2: the text is 100,001 characters long; a text "
                       "may have at most 100,000"):  # fmt: skip
        read_table(rows.encode(), fmt="jsonl")
    with pytest.raises(DatasetError, match="document 2: the text is 100,001 characters"):
        read_texts(("z" * 300 + "\n\n" + long).encode(), "notes.txt")


def test_a_domain_has_at_most_a_thousand_labels():
    rows = "".join(f"text {i},label {i}\n" for i in range(1_500))
    with pytest.raises(DatasetError, match="1,500 distinct labels; a domain has at most 1,000"):
        read_table(("text,label\n" + rows).encode(), fmt="csv")
    ok = "".join(f"text {i},label {i % 1000}\n" for i in range(2000))
    assert len(set(read_table(("text,label\n" + ok).encode(), fmt="csv").labels)) == 1000


def test_a_domain_has_at_most_so_many_examples(monkeypatch):
    import routing.data
    from routing.kinds.causal_lm.corpora import read_texts

    monkeypatch.setattr(routing.data, "MAX_EXAMPLES", 50)
    rows = "".join(f"text {i},{i % 2}\n" for i in range(51))
    with pytest.raises(DatasetError, match="51 examples; a domain takes at most 50"):
        read_table(("text,label\n" + rows).encode(), fmt="csv")
    assert len(read_table(("text,label\n" + rows[: rows.index("text 50")]).encode(), fmt="csv"))
    texts = "\n\n".join(f"document {i} " + "w" * 250 for i in range(51))
    with pytest.raises(DatasetError, match="51 examples; a domain takes at most 50"):
        read_texts(texts.encode(), "notes.txt")


def test_a_label_over_a_hundred_characters_is_refused():
    with pytest.raises(DatasetError, match="line 3: the label is 101 characters long"):
        read_table(("text,label\nx,a\ny," + "l" * 101 + "\n").encode(), fmt="csv")


def test_the_stored_split_reads_back_labelled_and_unlabelled():
    from routing.data import split_from_jsonl, split_to_jsonl

    labelled = Split(["a text", "another"], ["x", "y"])
    texts = Split(["only text", "more text"])
    for split in (labelled, texts):
        back = split_from_jsonl(split_to_jsonl(split))
        assert (back.texts, back.labels) == (split.texts, split.labels)
