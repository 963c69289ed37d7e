"""`orthovault ohif-config`: valid JavaScript naming the DICOMweb root; bad roots refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from api.ohif_config import app_config_js


def test_the_config_is_javascript_for_that_root(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ohif-config", "--dicomweb-root",
                                       "https://imaging.clinic.test/dicomweb/"])
    assert result.exit_code == 0, result.output
    assert '"https://imaging.clinic.test/dicomweb"' in result.output
    assert "getAuthorizationHeader" in result.output and "sessionStorage" in result.output
    node = shutil.which("node")
    if node:  # present wherever npm fetched the OHIF build
        script = tmp_path / "app-config.js"
        script.write_text(result.output)
        subprocess.run([node, "--check", str(script)], check=True, timeout=60)


@pytest.mark.parametrize("root", ["imaging.clinic.test/dicomweb", "https://x.test/api",
                                  "javascript:alert(1)//dicomweb"])
def test_a_root_that_is_not_a_dicomweb_url_is_refused(root: str) -> None:
    with pytest.raises(ValueError):
        app_config_js(root)
    result = CliRunner().invoke(main, ["ohif-config", "--dicomweb-root", root])
    assert result.exit_code == 2 and "dicomweb" in result.output
