"""The search page in a real browser (Debian's headless Chromium driven by Playwright):
search, click a result, the video is at the span's start, the copied link reopens that moment,
"Download clip" downloads the span.

Needs the ``chromium`` Debian package (``scripts/setup.sh`` installs it as root); Playwright's
own browser downloads are not used. The screenshots go to ``$GZ_ARTIFACTS`` (or a temporary
folder), and their paths are listed at the end of the pytest run.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AT_START = """() => { const v = document.getElementById('video');
  return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - Number(v.dataset.start)) < 0.5; }"""
THUMBS_LOADED = "() => [...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: `apt-get install chromium` (scripts/setup.sh does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def test_search_click_play_and_reopen_the_link(browser, base_url, artifacts_dir, save_artifact, videos):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900},
                              permissions=["clipboard-read", "clipboard-write"])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base_url + "/")
    page.fill("#q", "a red circle")
    page.press("#q", "Enter")
    page.wait_for_selector(".hit")
    page.wait_for_function(THUMBS_LOADED, timeout=20_000)
    hits = page.locator(".hit")
    assert hits.count() >= 3
    assert "moments for" in page.text_content("#status") and page.is_hidden("#notfound")
    assert ":" in hits.first.text_content() and "score" in hits.first.text_content()
    shot = os.path.join(artifacts_dir, "serve_results.png")
    page.screenshot(path=shot, full_page=True)
    save_artifact(shot, "screenshot of the search page's results")

    # the hit that starts latest, so the player really has to seek
    starts = [float(hits.nth(i).get_attribute("data-start")) for i in range(hits.count())]
    hit = hits.nth(starts.index(max(starts)))
    vid, start = hit.get_attribute("data-video"), max(starts)
    hit.click()
    page.wait_for_function(AT_START, timeout=30_000)
    t = page.evaluate("document.getElementById('video').currentTime")
    assert abs(t - start) < 0.5, (t, start)
    duration = page.evaluate("document.getElementById('video').duration")
    left = page.evaluate("parseFloat(document.getElementById('span').style.left)")
    assert abs(left - 100 * start / duration) < 1.0  # the span is marked on the timeline
    assert f"#v={vid}&t=" in page.url and "q=a+red+circle" in page.url
    # "Download clip" links the playing hit's span to the clip endpoint, and the link downloads it
    end = hit.get_attribute("data-end")
    href = page.get_attribute("#download", "href")
    assert href == f"/api/clip/{vid}?start={hit.get_attribute('data-start')}&end={end}", href
    assert page.is_visible("#download") and page.get_attribute("#download", "download") is not None
    clip = page.request.get(base_url + href)
    assert clip.status == 200 and len(clip.body()) > 0, clip.status
    assert clip.headers["content-disposition"].startswith("attachment") and clip.headers["content-type"] == "video/mp4"
    page.click("#copy")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link.startswith(base_url + "/?q=a+red+circle") and f"#v={vid}&t=" in link
    player = os.path.join(artifacts_dir, "serve_player.png")
    page.screenshot(path=player)
    save_artifact(player, "screenshot of the player at the span")

    again = ctx.new_page()  # the copied link reopens the same moment, with the same search
    again.goto(link)
    again.wait_for_selector(".hit")
    again.wait_for_function(AT_START, timeout=30_000)
    assert again.evaluate("Number(document.getElementById('video').dataset.start)") == start
    assert again.input_value("#q") == "a red circle"

    a = videos["lectures/a.mp4"]["video_id"]  # a hand-made link into the middle of a video
    again.goto(f"{base_url}/watch#v={a}&t=31.0&e=40.0")
    again.wait_for_function(AT_START, timeout=30_000)
    assert abs(again.evaluate("document.getElementById('video').currentTime") - 31.0) < 0.5
    assert "00:00:31.0" in again.text_content("#now-span")
    assert not errors, errors
    ctx.close()


def test_not_found_is_shown(browser, base_url):
    """When the model is confident nothing matches (``found: false``), the page says so."""
    page = browser.new_page()

    def not_found(route):
        r = route.fetch()
        body = r.json()
        route.fulfill(response=r, json={**body, "found": False})

    page.route("**/api/search?*", not_found)
    page.goto(base_url + "/?q=a+unicorn+plays+chess")
    page.wait_for_selector(".hit")
    assert page.is_visible("#notfound") and "Not found" in page.text_content("#notfound")
    page.close()


TRANSCRIPT_LOADED = "() => document.querySelectorAll('#transcript .line').length === 3"
CUES_LOADED = """() => { const t = document.querySelector('#video track');
  return !!t && t.readyState === 2 && t.track.cues.length === 3; }"""


def test_evidence_and_transcript(browser, text_url, text_rows, artifacts_dir, save_artifact):
    """A speech hit shows its caption with the matched word marked; the player gets the captions
    track and the transcript, whose lines seek the video and follow it as it plays."""
    from tests.serve.conftest import DEPOSITION_CUES

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(text_url + "/?q=exhibit")
    page.wait_for_selector(".hit .evidence mark")
    hit = page.locator(".hit").filter(has=page.locator(".evidence mark")).first
    assert hit.locator(".evidence mark").all_text_contents() == ["exhibit"]
    assert hit.locator(".snippet").first.text_content() == "Please look at exhibit 12."
    assert hit.locator(".evidence .speaker").first.text_content() == "Q:"
    assert "said" in hit.locator(".channels").text_content().split()
    assert hit.get_attribute("data-video") == text_rows["talk/deposition.mp4"]["video_id"]

    hit.click()
    page.wait_for_function(AT_START, timeout=30_000)
    page.wait_for_function(TRANSCRIPT_LOADED, timeout=10_000)
    lines = page.locator("#transcript .line")
    # markup-like caption text is shown as text, never parsed as HTML
    assert [lines.nth(i).locator(".said").text_content() for i in range(3)] == [c[2] for c in DEPOSITION_CUES]
    assert [lines.nth(i).locator(".speaker").text_content() for i in range(3)] == [f"{c[3]}:" for c in DEPOSITION_CUES]
    assert lines.nth(0).locator(".label").text_content() == "said"
    page.wait_for_function(CUES_LOADED, timeout=10_000)  # the captions track, from captions.vtt

    last = DEPOSITION_CUES[2][0]
    lines.nth(2).click()
    page.wait_for_function(f"""() => {{ const v = document.getElementById('video');
      return !v.seeking && Math.abs(v.currentTime - {last}) < 0.5; }}""", timeout=10_000)
    page.wait_for_selector("#transcript .line.current >> text=Objection", timeout=5_000)
    shot = os.path.join(artifacts_dir, "serve_transcript.png")
    page.screenshot(path=shot, full_page=True)
    save_artifact(shot, "screenshot of a speech hit's evidence and the transcript panel")
    assert not errors, errors
    page.close()
