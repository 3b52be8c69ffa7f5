"""Who may connect: loopback by default, a token for anything else; and `groundzero serve` itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import ConfigError
from groundzero.search.service.config import ServeConfig, is_loopback_host
from tests.serve.conftest import TOKEN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False), ("", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_non_loopback_needs_a_token():
    with pytest.raises(ConfigError, match="token"):
        ServeConfig(index_dir="x", host="0.0.0.0").validate()
    ServeConfig(index_dir="x", host="0.0.0.0", token=TOKEN).validate()
    ServeConfig(index_dir="x").validate()
    with pytest.raises(ConfigError, match="8 characters"):
        ServeConfig(index_dir="x", token="short").validate()
    with pytest.raises(ConfigError, match="letters"):
        ServeConfig(index_dir="x", token="has spaces in it").validate()
    with pytest.raises(ConfigError, match="port must be") as e:
        ServeConfig(index_dir="x", port=70000).validate()
    assert e.value.field == "port"


def test_cli_refuses_open_host_without_token(tmp_path, monkeypatch):
    monkeypatch.delenv("GROUNDZERO_TOKEN", raising=False)
    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--token" in r.stderr and r.stderr.count("\n") == 1, r.output
    assert r.stderr.startswith("error: --host 0.0.0.0 is reachable"), r.stderr
    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path), "--port", "70000"])
    assert r.exit_code == 2 and "error: --port must be in [0, 65535]" in r.stderr, r.output
    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path / "none")])
    assert r.exit_code == 1 and "does not exist" in r.stderr, r.output


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("path", ["/api/search?q=red", "/api/health", "/api/folders", "/api/videos/x"])
def test_api_needs_the_token(token_url, path):
    def get(**kw):
        return httpx.get(token_url + path, timeout=60, **kw)

    r = get()
    assert r.status_code == 401 and "token" in r.json()["detail"] and r.headers["www-authenticate"].startswith("Bearer")
    assert get(headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
    assert get(headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert get(cookies={"gz_token": "nope"}).status_code == 401
    ok = {200, 404}  # /api/videos/x: past the guard, then an unknown id
    assert get(headers={"Authorization": f"Bearer {TOKEN}"}).status_code in ok
    assert get(cookies={"gz_token": TOKEN}).status_code in ok
    sep = "&" if "?" in path else "?"
    assert httpx.get(f"{token_url}{path}{sep}token={TOKEN}", timeout=60).status_code in ok


@pytest.mark.slow
@pytest.mark.e2e
def test_page_with_token_sets_the_cookie(token_url):
    assert httpx.get(token_url + "/").status_code == 200  # the page holds no archive data
    assert "set-cookie" not in httpx.get(token_url + "/?token=wrong-token-123").headers
    r = httpx.get(f"{token_url}/?token={TOKEN}")
    cookie = r.headers["set-cookie"]
    assert r.status_code == 200 and f"gz_token={TOKEN}" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


@pytest.mark.slow
@pytest.mark.e2e
def test_serve_command_prints_its_address_and_serves(index_dir):
    env = {**os.environ, "GROUNDZERO_TOKEN": "", "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "groundzero.cli.main", "serve", "--index", str(index_dir), "--port", "0",
                          "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert m, (line, p.stderr.read() if p.poll() is not None else "")
        deadline = time.monotonic() + 30
        while True:
            try:
                h = httpx.get(m.group(1) + "api/health", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert h.status_code == 200 and h.json()["videos"] == 3
    finally:
        p.terminate()
        p.wait(15)
