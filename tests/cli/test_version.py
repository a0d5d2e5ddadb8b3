from typer.testing import CliRunner

from slicebox import __version__
from slicebox.cli import app


def test_version_prints_the_installed_version_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"slicebox {__version__}"


def test_shell_completion_can_be_shown() -> None:
    result = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "slicebox" in result.stdout
