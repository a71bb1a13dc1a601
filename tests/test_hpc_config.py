"""jobflow-remote project files: the repository template and the filled-in copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def projects(tmp_path, monkeypatch):
    import jobflow_remote

    folder = tmp_path / "jfremote"
    monkeypatch.setattr(jobflow_remote.SETTINGS, "projects_folder", str(folder))
    monkeypatch.setattr(jobflow_remote.SETTINGS, "project", None)
    return folder


def test_repository_template_is_a_valid_project():
    from jobflow_remote.config.base import Project

    project = Project.model_validate(yaml.safe_load((REPO / "jfremote_config.yaml").read_text()))
    assert set(project.workers) == {"gpu", "vasp"}
    assert project.workers["gpu"].resources["gres"] == "gpu:1"
    assert project.workers["gpu"].scheduler_type == "slurm"
    vasp = project.workers["vasp"]
    assert {"nodes", "ntasks", "time"} <= set(vasp.resources)
    assert "module load" in vasp.pre_run and "ATOMATE2_VASP_CMD" in vasp.pre_run
    store = project.get_jobstore()
    assert store.docs_store.collection_name == "jobs"
    assert set(store.additional_stores) == {"data"}


def test_written_project_uses_the_anisoscreen_store(projects, tmp_path):
    from jobflow_remote import ConfigManager

    from anisoscreen.hpc.config import write_project_config
    from anisoscreen.settings import get_settings

    settings = get_settings()  # the embedded store under the test's data dir
    path = write_project_config(
        name="aniso",
        settings=settings,
        work_dir=tmp_path / "runs",
        queue_uri="mongodb://queue.example.org:27017",
    )
    assert path == projects / "aniso.yaml" and oct(path.stat().st_mode & 0o777) == "0o600"
    project = ConfigManager().get_project("aniso")
    assert project.workers["gpu"].resources["gres"] == "gpu:1"
    assert project.workers["vasp"].work_dir == tmp_path / "runs" / "vasp"
    assert "module load vasp" in project.workers["vasp"].pre_run
    jobstore = project.get_jobstore()
    from anisoscreen.store import SQLiteStore

    assert isinstance(jobstore.docs_store, SQLiteStore)
    assert jobstore.docs_store.path == str(settings.embedded_store_path)
    assert jobstore.docs_store.key_fields == ["uuid", "index"]
    assert jobstore.additional_stores["data"].collection_name == "jobs_data"
    assert project.get_queue_store().database == "anisoscreen_queue"
    # an existing file is kept unless asked
    from anisoscreen.errors import AnisoscreenError

    with pytest.raises(AnisoscreenError, match="exists"):
        write_project_config(name="aniso", settings=settings, work_dir=tmp_path / "runs")
    with pytest.raises(AnisoscreenError, match="must differ"):
        write_project_config(
            tmp_path / "x.yaml", settings=settings, work_dir=tmp_path, queue_database="anisoscreen"
        )


def test_hpc_config_command_and_missing_project(projects, tmp_path):
    from anisoscreen.commands.hpc import register
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.hpc.queue import queue_status

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        [
            "hpc-config",
            "--name",
            "cluster",
            "--work-dir",
            str(tmp_path / "w"),
            "--host",
            "login.example.org",
        ],
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((projects / "cluster.yaml").read_text())
    assert data["workers"]["vasp"]["type"] == "remote"
    assert data["workers"]["vasp"]["host"] == "login.example.org"
    # a project that does not exist is a user error, not a traceback
    with pytest.raises(AnisoscreenError, match="not usable"):
        queue_status("nope")
    result = CliRunner().invoke(app, ["submit"])
    assert result.exit_code != 0 and "--ids, --top-k or --ar-min" in str(result.exception)
