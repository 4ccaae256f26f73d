from pathlib import Path

from tests.conftest import Cli
from tests.helpers import patient, setup_charges, setup_patients


def test_import_and_list(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1"), patient("P2", first_name="Bob")])
    setup_charges(cli, tmp_path, [("C1", "P1", "$1,234.56"), ("C2", "P2", "10.00")])
    r = cli.ok("list", "--format", "jsonl")
    assert len(r.stdout.splitlines()) == 2
