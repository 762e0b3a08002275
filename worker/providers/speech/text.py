"""Text for speech: a reply's Markdown made speakable (`clean_for_speech`) and cut into sentences.

Engines speak one sentence or a short text at a time; `split_sentences` gives the pieces,
none longer than a limit, so the first clip exists before the whole text is spoken.
"""
from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?^[ \t]*\1[`~]*[ \t]*$", re.M | re.S)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*\Z", re.M | re.S)  # unclosed: a reply cut short
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_AUTOLINK = re.compile(r"<(?:https?|ftp|mailto):[^>\s]*>", re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_IMAGE = re.compile(r"!\[[^\]]*\](?:\((?:[^()]|\([^()]*\))*\)|\[[^\]]*\])")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^()]*\))*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_REF_DEF = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]+\S+.*$", re.M)
_FOOTNOTE = re.compile(r"\[\^[^\]\s]+\]:?")
_CITATION = re.compile(r"\s*\[\s*\d+(?:\s*(?:[,;]|[-–]|and)\s*\d+)*\s*\]")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+[^\s<>()\[\].,;:!?\"']", re.I)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^[ \t]*(?:[-=_*][ \t]*){3,}$")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_BULLET = re.compile(r"^[ \t]*[-*+•][ \t]+(?:\[[ xX]\][ \t]+)?")
_NUMBERED = re.compile(r"^[ \t]*(\d{1,3})[.)][ \t]+")
_TABLE_SEP = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{2,}:?[ \t]*\|)+(?:[ \t]*:?-{2,}:?[ \t]*)?\|?[ \t]*$")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S)
_EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])", re.S)
_EM_UNDER = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])", re.S)
_TERMINAL = re.compile(r"[.!?;:…。！？]['\"’”)\]]*$")


def clean_for_speech(text: str, code: str = "(code omitted)") -> str:
    """Text as it should be spoken: Markdown, citations, code and URLs taken out, one line.

    Headings, list items, table rows and paragraphs end with a full stop when they have no
    punctuation of their own, so the voice pauses there; link text stays, links and images go;
    inline code keeps its words; a fenced code block becomes `code` ("" to drop it).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    placeholder = f"\n\n{code}\n\n" if code else "\n\n"
    text = _FENCE.sub(placeholder, text)
    text = _OPEN_FENCE.sub(placeholder, text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _AUTOLINK.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_DEF.sub("", text)
    text = _FOOTNOTE.sub("", text)
    text = _CITATION.sub("", text)  # before reference links: [2, 3][4] is two citations
    text = _REF_LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(lambda m: m.group(2).strip(), text)
    text = _URL.sub(" ", text)

    blocks: list[str] = []  # each ends where the voice should pause
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(" ".join(paragraph))
            paragraph.clear()

    for line in text.split("\n"):
        line = _QUOTE.sub("", line)
        if not line.strip() or _RULE.match(line) or _TABLE_SEP.match(line):
            flush()  # a blank line, a rule (or setext underline) ends what came before
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            blocks.append(heading.group(1))
            continue
        if line.count("|") >= 2 or line.strip().startswith("|"):
            flush()
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            blocks.append(", ".join(c for c in cells if c))
            continue
        bullet = _BULLET.match(line)
        numbered = _NUMBERED.match(line)
        if bullet or numbered:
            flush()
            line = _BULLET.sub("", line) if bullet else _NUMBERED.sub(r"\1: ", line)
        paragraph.append(line.strip())
    flush()

    spoken = []
    for block in blocks:
        block = _STRIKE.sub(r"\1", _STRONG.sub(r"\2", block))
        block = _EM_UNDER.sub(r"\1", _EM_STAR.sub(r"\1", block))
        block = re.sub(r"\(\s*\)", " ", block)
        block = re.sub(r"\s+", " ", block).strip()
        block = re.sub(r"\s+([.,;:!?…])", r"\1", block)
        if not block.strip(" .,;:-–—*#_|>"):
            continue
        if not _TERMINAL.search(block):
            block = block.rstrip(" ,") + "."
        spoken.append(block)
    return " ".join(spoken)


# Words that end in a full stop without ending the sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig", "figs", "eq",
    "eqs", "no", "nos", "approx", "ca", "inc", "ltd", "co", "dept", "vol", "ch", "sec", "p", "pp",
    "al", "resp", "a.m", "p.m", "u.s", "u.k",
}
_SENTENCE_END = re.compile(r"(?:[.!?…]+['\"’”)\]]*(?=\s|$)|[。！？]+['\"’”)\]」』]*)\s*")
_CLAUSE = re.compile(r"[,;:—–](?=\s)|\s[-–—]\s")


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences to speak one at a time, none longer than max_chars (long ones are cut at a
    comma, semicolon or dash, else between words). Lines are never joined."""
    sentences: list[str] = []
    for line in text.split("\n"):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            piece = line[start:m.end()].strip()
            words = piece.rstrip(".!?…'\"’”)]").split()
            word = words[-1].lstrip("(\"'“‘[") if words else ""
            if m.group().rstrip() == "." and (word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())):
                continue  # "Dr. Smith", "e.g. this", "J. R. R. Tolkien"
            if piece:
                sentences.extend(_cut(piece, max_chars))
            start = m.end()
        rest = line[start:].strip()
        if rest:
            sentences.extend(_cut(rest, max_chars))
    return sentences


def _cut(sentence: str, max_chars: int) -> list[str]:
    out = []
    while len(sentence) > max_chars:
        window = sentence[:max_chars + 1]
        cut = 0
        for m in _CLAUSE.finditer(window):
            if m.end() <= max_chars and m.start() >= max_chars // 3:
                cut = m.end()
        if not cut:
            cut = window.rfind(" ")
            if cut < max_chars // 3:
                cut = max_chars  # one very long word
        head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
        if head:
            out.append(head)
    if sentence:
        out.append(sentence)
    return out
