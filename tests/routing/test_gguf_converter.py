"""Installing llama.cpp's converter from a `llama-cpp-python` source distribution: only the
converter's files are kept, a folder appears whole or not at all, and what is wrong says
so. (The real source distribution is installed by `./run install`; tests/hub/test_gguf.py
converts with it.)"""

import io
import tarfile

import pytest

from routing import gguf

TOP = f"llama_cpp_python-{gguf.LLAMA_CPP_PYTHON}/vendor/llama.cpp/"


def sdist(path, files: dict[str, str]):
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_only_the_converter_is_kept_and_a_second_install_does_nothing(tmp_path):
    source = sdist(tmp_path / "llama.tar.gz", {
        TOP + "convert_hf_to_gguf.py": "print('converter')",
        TOP + "conversion/__init__.py": "",
        TOP + "gguf-py/gguf/__init__.py": "",
        TOP + "LICENSE": "MIT",
        TOP + "src/llama.cpp": "int main() {}",  # the C++ sources are not kept
        f"llama_cpp_python-{gguf.LLAMA_CPP_PYTHON}/llama_cpp/__init__.py": "",
    })  # fmt: skip
    folder = tmp_path / "share" / "converter"
    assert "python -m routing.gguf install" in gguf.converter_missing(folder)
    assert gguf.install_converter(folder, sdist=source) == folder
    kept = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert kept == ["LICENSE", "conversion/__init__.py", "convert_hf_to_gguf.py",
                    "gguf-py/gguf/__init__.py"]  # fmt: skip
    assert gguf.converter_missing(folder) is None
    gguf.install_converter(folder, sdist=tmp_path / "absent.tar.gz")  # installed: not read
    assert [p.name for p in (tmp_path / "share").iterdir()] == ["converter"]  # no leftovers


def test_a_source_distribution_without_the_converter_installs_nothing(tmp_path):
    source = sdist(tmp_path / "other.tar.gz", {TOP + "README.md": "no converter here"})
    folder = tmp_path / "share" / "converter"
    with pytest.raises(gguf.GGUFError, match="carries no vendor/llama.cpp/convert_hf_to_gguf"):
        gguf.install_converter(folder, sdist=source)
    assert not folder.exists() and list((tmp_path / "share").iterdir()) == []


def test_converting_says_what_is_missing_or_wrong(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOECOLLAB_GGUF_CONVERTER", str(tmp_path / "nowhere"))
    assert gguf.main(["convert", str(tmp_path), str(tmp_path / "out.gguf")]) == 1
    assert "llama.cpp's converter is not installed" in capsys.readouterr().err
    with pytest.raises(gguf.GGUFError, match="unknown GGUF type 'q2_k'"):
        gguf.write_gguf(tmp_path, tmp_path / "out.gguf", "q2_k")
