from atheus_ray.rows import content_id, prompt_version, read_prompt, task_text


def test_content_id_is_stable_and_separates_parts():
    assert content_id("指示", "入力") == content_id("指示", "入力")
    assert len(content_id("x")) == 16
    assert content_id("ab", "c") != content_id("a", "bc")
    assert content_id("a", None) == content_id("a", "")


def test_prompt_version_changes_with_the_file(tmp_path):
    p = tmp_path / "p.md"
    p.write_text("v1", encoding="utf-8")
    first = prompt_version(p)
    p.write_text("v2", encoding="utf-8")
    assert prompt_version(p) != first


def test_task_text_puts_input_on_the_next_line():
    assert task_text("要約して", None) == "要約して"
    assert task_text("要約して", "本文") == "要約して\n本文"


def test_read_prompt_gives_text_and_the_same_version(tmp_path):
    p = tmp_path / "p.md"
    p.write_text("指示文", encoding="utf-8")
    assert read_prompt(p) == ("指示文", prompt_version(p))
