"""What comes from events, shown on a page as the text it is: never as Markdown.

Streamlit renders every text element (`st.markdown`, `st.caption`, `st.subheader`, `st.info`, widget labels and
`help` tooltips) as Markdown with its own extensions: `:red[...]` colours, `:material/...:` icons, `$...$` math,
`:smile:` emoji. A value from an event (an agent id, an approver, an error message, a field name) interpolated
there could load a remote image (`![x](http://...)`), plant a link, or restyle the page. :func:`md` makes such a
value literal: every ASCII punctuation mark is backslash-escaped (CommonMark lets any of them be escaped, and
Streamlit's extensions all start with one: its icon rewrite and its emoji and math detection look at the raw
source, which then holds `\\:` and `\\$` instead), and line breaks become spaces (a value stays on its line, so
it cannot start a heading, a list or a table). GitHub-flavoured autolinks (``http://...``, ``www.x``, ``a@b.c``)
are found in the text after escapes are undone, so escaping cannot stop them: an invisible WORD JOINER (U+2060)
goes inside each trigger (after the ``:`` of ``://``, after ``www`` before ``.``, before ``@``), so the page
shows the same characters, unlinked. Tables (`st.dataframe`) show text as text and need none of this.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
JOINER = "\u2060"  # WORD JOINER: zero-width, so the text reads the same, but no autolink pattern matches across it
_AUTOLINKS = re.compile(r"(:)(?=//)|(www)(?=\.)|()(?=@)", re.IGNORECASE)


def md(value: object) -> str:
    """`value` as literal text inside Markdown: ``md("![x](http://h/i.png)")`` shows exactly those characters."""
    text = _AUTOLINKS.sub(lambda m: m.group(0) + JOINER, _LINE_BREAKS.sub(" ", str(value)))
    return _PUNCTUATION.sub(r"\\\1", text)
