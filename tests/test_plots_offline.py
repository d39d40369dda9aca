"""`dvc plots show` in a real headless browser with the network blocked: with the project's template
(plots.html_template, vega inline) every vega plot draws and the console stays clean; with DVC's
default page (vega from a CDN) nothing draws, which is what the check is there to catch."""
import re
import shutil
import subprocess

import pytest
from conftest import ROOT

from fashionclf.report.vega_offline import offline_template

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=(
    "no Chromium installed (apt-get install chromium chromium-driver; .ci/run does): "
    "the offline plots test needs a real browser"))
OFFLINE_FLAGS = [  # every request that leaves the machine fails: no DNS, and a proxy that refuses
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
# per vega plot: drawn if its SVG has marks or its canvas has painted pixels
DRAWN = """
return arguments[0].map(id => {
  const div = document.getElementById(id);
  if (!div) return false;
  const svg = div.querySelector('svg');
  if (svg) return svg.querySelectorAll('path, rect, line, text').length > 0;
  const canvas = div.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return false;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return painted > 100;
});
"""


def render(template_text: str, tmp_path, name: str):
    template = tmp_path / f"{name}.html"
    template.write_text(template_text, encoding="utf-8")
    out = tmp_path / name
    subprocess.run(["dvc", "plots", "show", "--html-template", str(template), "-o", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return out / "index.html"


def open_offline(page, tmp_path, settle_s: float = 30.0):
    """(drawn per vega plot, console errors) for the page in headless Chromium, network blocked."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", *OFFLINE_FLAGS]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    plots = re.findall(r"vegaEmbed\('#([^']+)'", page.read_text())  # DVC's div per vega plot
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(page.as_uri())
        try:  # vegaEmbed draws asynchronously: wait until every plot has drawn, or give up
            WebDriverWait(driver, settle_s, poll_frequency=0.5).until(lambda d: all(d.execute_script(DRAWN, plots)))
        except Exception:  # noqa: BLE001 - the assertions below say what did not draw
            pass
        drawn = driver.execute_script(DRAWN, plots)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    return drawn, errors


def test_dvc_plots_show_draws_every_plot_offline_with_the_projects_template(tmp_path):
    assert (ROOT / ".dvc/config").read_text().count("html_template = ../plots/offline_template.html") == 1
    page = render(offline_template(), tmp_path, "offline")
    assert "cdn.jsdelivr" not in page.read_text()
    drawn, errors = open_offline(page, tmp_path)
    assert len(drawn) >= 50 and all(drawn), f"{drawn.count(False)} of {len(drawn)} vega plots did not draw"
    assert not errors, errors[:5]


def test_without_the_template_the_same_check_fails(tmp_path):
    from dvc_render.html import PAGE_HTML  # DVC's default page: its {scripts} are the CDN's script tags

    page = render(PAGE_HTML, tmp_path, "default")
    assert "cdn.jsdelivr" in page.read_text()
    drawn, errors = open_offline(page, tmp_path, settle_s=3)
    assert drawn and not any(drawn)
    assert any("vegaEmbed is not defined" in e for e in errors), errors[:5]
