from helpers import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    command = ci_lines[ci_lines.index(next(line for line in ci_lines if line.startswith("# README.md"))) + 1]
    assert "pytest" in command
    assert command in readme
