from atheus_ray.rows import LINEAGE_COLUMNS, content_id, prompt_version, seed_row
from atheus_ray.seeds import Seed


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


def test_seed_row_carries_the_contract():
    seed = Seed(id="fluency-001", perspective="fluency", category="rewriting", domain="business_manners",
                instruction="敬語に直して", input="明日行きます", output="明日伺います")  # fmt: skip
    row = seed_row(seed)
    assert set(LINEAGE_COLUMNS) <= set(row)
    assert row["id"] == content_id("敬語に直して", "明日行きます")
    assert row["seed_ids"] == ["fluency-001"]
    assert (row["origin"], row["round"], row["parent_id"]) == ("seed", 0, None)
