"""MLproject entry-point adapter: empty parameters mean "not given", true/false mean a switch."""

from mlcycle.commands.entry import adapt


def test_empty_values_are_dropped_and_switches_follow_their_value():
    args = ["--version=", "--alias=challenger", "--force=false", "--reason=", "--overrides", ""]
    assert adapt("promote", args) == ["--alias=challenger", "--overrides", ""]
    assert adapt("promote", ["--force=true", "--alias=challenger"]) == ["--force", "--alias=challenger"]


def test_an_explicit_version_wins_over_the_default_alias():
    assert adapt("promote", ["--version=3", "--alias=challenger", "--force=false"]) == ["--version=3"]
    assert adapt("predict", ["--input=a.csv", "--model-uri=", "--on-bad-rows=skip"]) == ["--input=a.csv", "--on-bad-rows=skip"]
