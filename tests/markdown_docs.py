"""Shared by the docs tests: the pages, their code blocks, links, anchors."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
_FENCE = re.compile(r'^(\s*)(`{3,}|~{3,})\s*([\w+-]*)')
# [text](target) and ![alt](target); the text may hold `code` but no brackets.
_LINK = re.compile(r'!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?'
                   r'(?:\s+"[^"]*")?\s*\)')
_INLINE_CODE = re.compile(r'(`+)(.+?)\1')


def pages() -> list[pathlib.Path]:
  """README.md and every docs/*.md page."""
  return [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))


def code_blocks(text: str) -> list[tuple[str, list[str], int]]:
  """Fenced blocks as (language, lines, 1-based line of the first content line)."""
  blocks, lang, lines, fence, start = [], None, [], None, 0
  for number, line in enumerate(text.split('\n'), 1):
    match = _FENCE.match(line)
    if fence is None:
      if match:
        fence, lang, lines, start = match.group(2), match.group(3), [], number + 1
    elif match and match.group(2).startswith(fence) and not match.group(3):
      blocks.append((lang, lines, start))
      fence = None
    else:
      lines.append(line)
  if fence is not None:
    raise ValueError(f'code block opened at line {start - 1} is never closed')
  return blocks


def prose(text: str) -> list[tuple[int, str]]:
  """(line number, line) outside code blocks, with inline code spans blanked."""
  out, fence = [], None
  for number, line in enumerate(text.split('\n'), 1):
    match = _FENCE.match(line)
    if fence is None and match:
      fence = match.group(2)
      continue
    if fence is not None:
      if match and match.group(2).startswith(fence) and not match.group(3):
        fence = None
      continue
    out.append((number, _INLINE_CODE.sub(lambda m: ' ' * len(m.group(0)),
                                         line)))
  return out


def links(text: str) -> list[tuple[int, str]]:
  """(line number, target) of every inline link and image outside code.

  A link's text may wrap onto the next line, so each line is matched together
  with the one after it and a link is kept on the line where it starts.
  """
  lines = prose(text)
  found = []
  for i, (number, line) in enumerate(lines):
    nxt = lines[i + 1][1] if i + 1 < len(lines) else ''
    joined = line + '\n' + nxt
    for match in _LINK.finditer(joined):
      if match.start() < len(line):
        found.append((number, match.group(2)))
  return found


def github_anchor(heading: str) -> str:
  """GitHub's anchor of a heading: rendered text, lower case, punctuation dropped."""
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links -> text
  text = re.sub(r'<[^>]+>', '', text)                        # inline HTML
  text = text.replace('`', '').lower()
  text = re.sub(r'[^\w\- ]', '', text)  # \w: letters, digits, underscore
  return text.replace(' ', '-')


def anchors(text: str) -> set[str]:
  """Every heading anchor of a page, with GitHub's -1, -2 for repeats."""
  seen: dict[str, int] = {}
  result = set()
  for _, line in _headings(text):
    base = github_anchor(line)
    count = seen.get(base, 0)
    result.add(base if count == 0 else f'{base}-{count}')
    seen[base] = count + 1
  return result


def _headings(text: str) -> list[tuple[int, str]]:
  """(line number, heading text) of the ATX headings outside code blocks."""
  raw = text.split('\n')
  out = []
  for number, _ in prose(text):
    match = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', raw[number - 1])
    if match:
      out.append((number, match.group(1)))
  return out
