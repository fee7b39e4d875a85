"""Secrets stay secret: store URLs are shown with their password masked, and stores keep
their files private (the file store: tests/test_file_store.py; SQLite: the SQL plugin)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openid_plugins.backends import display_url

SECRET_URL = "postgresql://app:s3cr%40t@db.example:5432/openid?table_prefix=x_"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SECRET_URL, "postgresql://app:***@db.example:5432/openid?table_prefix=x_"),
        ("mysql://root:pw@127.0.0.1/test", "mysql://root:***@127.0.0.1/test"),
        ("mysql://a:b@c@host/db", "mysql://a:***@host/db"),  # an unencoded @ in a password
        ("postgresql://app@db/openid", "postgresql://app@db/openid"),  # no password
        ("file:///var/lib/openid", "file:///var/lib/openid"),
        ("sqlite:////var/lib/openid.db", "sqlite:////var/lib/openid.db"),
        ("memory://", "memory://"),
        ("not a url", "not a url"),
    ],
)
def test_display_url_masks_only_the_password(url, shown):
    assert display_url(url) == shown


def test_the_plugins_command_masks_the_store_and_queue_passwords(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OPENID_PLUGINS_STORE": SECRET_URL,
        "OPENID_PLUGINS_QUEUE": "mysql://worker:hunter2@mq.example/q",
    }
    done = subprocess.run(
        [sys.executable, "-m", "openid_plugins", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "s3cr" not in output and "hunter2" not in output
    assert "Configured store: postgresql://app:***@db.example:5432/openid" in output
    assert "Configured queue: mysql://worker:***@mq.example/q" in output
