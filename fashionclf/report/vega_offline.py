"""An HTML page template for `dvc plots show` and `dvc plots diff` that draws with no network.

DVC's default page loads vega, vega-lite and vega-embed from a public CDN, so behind a proxy or
offline every plot renders as nothing. This template carries the three libraries inline, from the
bundle that PyPI's vl-convert-python ships (`javascript_bundle`: vega-embed, vega-lite, vega and
their dependencies in one script that sets window.vegaEmbed), and leaves out DVC's `{scripts}`
placeholder, so DVC's CDN tags are dropped. `.dvc/config` points `plots.html_template` at the file
the plots_template stage writes.
"""
from __future__ import annotations

VEGA_LITE_VERSION = "5.21"  # DVC's plot templates are vega-lite v5 specs

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script type="text/javascript">
%s
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template(vega_lite_version: str = VEGA_LITE_VERSION) -> str:
    """The page, with the JavaScript inline. A literal "</script" inside the bundle would end the
    script element early, so it is escaped as JavaScript reads it the same ("<\\/script")."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=vega_lite_version).replace("</script", "<\\/script")
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in bundle:  # DVC fills placeholders by plain replacement, the bundle's too
            raise ValueError(f"the vega bundle contains DVC's placeholder {placeholder}")
    return PAGE.replace("%s", bundle)
