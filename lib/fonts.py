"""Find an installed Chinese (CJK) font and make matplotlib use it.

matplotlib's default font (DejaVu Sans) has no Chinese glyphs: Chinese labels come out as empty
boxes with a "Glyph ... missing from font(s)" warning. matplotlib also does not reliably pick up
fonts that fontconfig knows about, so the font file is registered by path
(`font_manager.fontManager.addfont`) and put first in the sans-serif list, with DejaVu Sans
after it as the fallback for glyphs the CJK font lacks (matplotlib >= 3.6 falls back per glyph).

Where the fonts come from: `make setup-tex` installs fonts-wqy-microhei on Debian/Ubuntu; TeX
Live brings Fandol and AR PL; desktops often have Noto CJK / Source Han. TrueType-outline fonts
are preferred because the PDF backend embeds them as Type 42 (`pdf.fonttype = 42`, selectable
text); CFF-outline OpenType fonts (Noto CJK, Source Han, Fandol) come after them.

    from lib.fonts import use_cjk_font
    sns.set_theme()            # resets rcParams: set the font afterwards
    family = use_cjk_font()    # the family name, or None (warned once) -> English-only labels
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import warnings
from pathlib import Path

# A character every Simplified-Chinese font has ("医", medicine): a font without it is no use here.
PROBE_CHARACTER = "医"

# Known font files, best first: TrueType outlines (embed as Type 42), then CFF-outline OpenType.
PREFERRED_FILES = (
    "wqy-microhei.ttc", "wqy-zenhei.ttc", "uming.ttc", "ukai.ttc", "simhei.ttf", "msyh.ttc",
    "NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansSC-Regular.otf",
    "SourceHanSansSC-Regular.otf", "SourceHanSans-Regular.ttc", "FandolHei-Regular.otf",
    "FandolSong-Regular.otf", "PingFang.ttc", "STHeiti Light.ttc",
)

# Folders where these files are installed by package managers, TeX Live and the usual desktops.
FONT_FOLDERS = (
    "/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
    "/usr/share/texlive/texmf-dist/fonts", "/usr/share/texmf/fonts",
    "/usr/local/texlive/*/texmf-dist/fonts", "/opt/texlive/*/texmf-dist/fonts",
    "/Library/Fonts", "/System/Library/Fonts", "~/Library/Fonts", "C:/Windows/Fonts",
)


def fontconfig_chinese_fonts() -> list[str]:
    """Font files that fontconfig lists as covering Chinese (`fc-list :lang=zh file`)."""
    if shutil.which("fc-list") is None:
        return []
    try:
        listing = subprocess.run(
            ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip().rstrip(":") for line in listing.splitlines() if line.strip()]


def files_in_font_folders() -> list[str]:
    """Every file under the usual font folders whose name is one of PREFERRED_FILES."""
    wanted = {name.lower() for name in PREFERRED_FILES}
    found = []
    for pattern in FONT_FOLDERS:
        for folder in glob.glob(os.path.expanduser(pattern)):
            for root, _, names in os.walk(folder):
                found += [os.path.join(root, name) for name in names if name.lower() in wanted]
    return found


def preference(path: str) -> int:
    """Rank of a font file: its place in PREFERRED_FILES, unknown files after all known ones."""
    names = [name.lower() for name in PREFERRED_FILES]
    name = Path(path).name.lower()
    return names.index(name) if name in names else len(names)


def has_chinese_glyphs(path: str) -> bool:
    from matplotlib import ft2font

    try:
        return ft2font.FT2Font(path).get_char_index(ord(PROBE_CHARACTER)) != 0
    except (OSError, RuntimeError, ValueError):
        return False


def find_cjk_font() -> str | None:
    """The path of the best installed font with Chinese glyphs, or None."""
    candidates = sorted(set(fontconfig_chinese_fonts() + files_in_font_folders()), key=lambda p: (preference(p), p))
    return next((path for path in candidates if has_chinese_glyphs(path)), None)


@functools.cache
def register_cjk_font() -> str | None:
    """Register the CJK font with matplotlib once; its family name, or None (warned once)."""
    from matplotlib import font_manager

    path = find_cjk_font()
    if path is None:
        warnings.warn(
            "no Chinese font found (install fonts-wqy-microhei: `make setup-tex`, or Noto CJK); "
            "figures use English-only labels and skip the Chinese examples",
            stacklevel=2,
        )
        return None
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def use_cjk_font() -> str | None:
    """Put the CJK font first in matplotlib's sans-serif list (call after `sns.set_theme()`)."""
    import matplotlib as mpl

    family = register_cjk_font()
    if family is not None:
        mpl.rcParams["font.family"] = "sans-serif"
        mpl.rcParams["font.sans-serif"] = [family, "DejaVu Sans"]
    return family
