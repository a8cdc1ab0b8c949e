"""CLI errors: clear messages and a non-zero exit, never a traceback (no model load needed)."""

from pathlib import Path

import pytest

from indexer.cli import DEFAULT_INDEX_DIR, default_index_dir, main


def test_missing_index(tmp_path: Path, capsys):
    assert main(["search", "cars", "--index-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "No index at" in err and "newsdesk index" in err and "Traceback" not in err


def test_missing_corpus(tmp_path: Path, capsys):
    assert main(["index", str(tmp_path / "nope"), "--index-dir", str(tmp_path / "i")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_date_and_k(tmp_path: Path, capsys):
    assert main(["search", "cars", "--from", "2020-13-01", "--index-dir", str(tmp_path)]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "cars", "-k", "0"])
    assert exit_info.value.code == 2
    assert "between 1 and 100" in capsys.readouterr().err


def test_empty_corpus(tmp_path: Path, capsys):
    (tmp_path / "c").mkdir()
    assert main(["index", str(tmp_path / "c"), "--index-dir", str(tmp_path / "i")]) == 2
    assert "No articles to index" in capsys.readouterr().err


def test_ask_errors(tmp_path: Path, capsys):
    assert main(["ask", "Who?", "--index-dir", str(tmp_path)]) == 2
    assert "No index at" in capsys.readouterr().err
    assert main(["ask", "   ", "--index-dir", str(tmp_path)]) == 2
    assert "question is empty" in capsys.readouterr().err


def test_index_dir_that_is_a_file(tmp_path: Path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not an index")
    for argv in (["search", "cars"], ["ask", "Who?"], ["index", str(tmp_path)]):
        assert main([*argv, "--index-dir", str(afile)]) == 2
        err = capsys.readouterr().err
        assert "newsdesk: error:" in err and "not a directory" in err and "Traceback" not in err
    assert main(["search", "cars", "--index-dir", str(afile / "below")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_search_and_ask_refuse_what_the_api_refuses(tmp_path: Path, capsys):
    index = ["--index-dir", str(tmp_path)]  # no index there: the input is checked first
    assert main(["search", "\x01\x02 cars", *index]) == 2
    assert "U+0001" in capsys.readouterr().err
    assert main(["search", "cars", "--source", " ", *index]) == 2
    assert "source is empty" in capsys.readouterr().err
    assert main(["ask", "Who\x00?", *index]) == 2
    assert "U+0000" in capsys.readouterr().err
    assert main(["search", "cars", "--from", "2022-01-01", "--to", "2021-01-01", *index]) == 2
    assert "--from 2022-01-01 is after --to 2021-01-01" in capsys.readouterr().err
    assert main(["search", "\u200b", *index]) == 2
    assert "no letters, digits or symbols" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["search", "cars"], ["ask", "Who?"], ["index", "corpus"]])
def test_an_empty_index_dir_is_refused_not_taken_as_the_current_directory(command: list[str], capsys, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([*command, "--index-dir", ""])
    assert exited.value.code == 2 and "an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("NEWSDESK_INDEX_DIR", "")
    assert default_index_dir() == DEFAULT_INDEX_DIR
