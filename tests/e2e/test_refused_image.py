"""Issue 11, item 4: ``-U`` never exits 32 without saying why.

Under the default update mode a publisher's new image is refused (exit 32);
the reason used to be INFO only, so cron mail showed a failure code and no line.
"""

from __future__ import annotations

from tests.support.lists import make_image


def test_a_new_image_in_an_update_is_refused_with_one_warning_per_image(site) -> None:
    published = site.file_list()
    site.subscribed(published)
    added = [make_image(), make_image()]
    site.republish(published, version="2", images=[*published.images, *added])

    result = site.subscribe("-U")

    assert result.returncode == 32, result
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING:")]
    for image in added:
        identifier = image["dc:identifier"]
        [line] = [w for w in warnings if f"ImageId '{identifier}'" in w]
        assert f"refused by subscription '{published.identifier}'" in line, result
        assert "--imagelist-newimage-accept" in line
    assert len(warnings) == len(added), result
    known = {row[0] for row in site.sql('SELECT identifier FROM "ImageDefinition"')}
    assert not known & {image["dc:identifier"] for image in added}
