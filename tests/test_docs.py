"""README.md and docs/*.md: links and anchors resolve, every page is linked."""

import pathlib
import re
import urllib.parse

import pytest

import markdown_docs

ROOT = markdown_docs.ROOT
PAGES = markdown_docs.pages() + [ROOT / 'benchmarks' / 'README.md']


def _broken_links(page: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
  """Each link of `page` that is absolute or does not resolve, with the reason."""
  text = page.read_text()
  problems = []
  for number, target in markdown_docs.links(text):
    where = f'{page.relative_to(root)}:{number}: ({target})'
    if re.match(r'^(https?|mailto):', target):
      continue  # external: not checked offline
    if re.match(r'^[a-z][a-z0-9+.-]*:', target) or target.startswith('/'):
      problems.append(f'{where} is not a relative link')
      continue
    path, _, anchor = target.partition('#')
    resolved = (page.parent / urllib.parse.unquote(path)).resolve() if path else page
    if not resolved.exists():
      problems.append(f'{where}: no such file {resolved}')
      continue
    if root not in resolved.parents and resolved != root:
      problems.append(f'{where} leaves the repository')
      continue
    if anchor:
      if resolved.suffix != '.md':
        problems.append(f'{where}: an anchor into a non-Markdown file')
      elif anchor not in markdown_docs.anchors(resolved.read_text()):
        problems.append(f'{where}: {resolved.name} has no heading #{anchor}')
  return problems


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(page):
  assert not _broken_links(page), '\n'.join(_broken_links(page))


def _linked_pages(page: pathlib.Path) -> set[pathlib.Path]:
  """The files that `page` links to (anchors dropped)."""
  out = set()
  for _, target in markdown_docs.links(page.read_text()):
    path = target.partition('#')[0]
    if path and not re.match(r'^[a-z][a-z0-9+.-]*:', target):
      out.add((page.parent / urllib.parse.unquote(path)).resolve())
  return out


@pytest.mark.parametrize('hub', ['README.md', 'docs/design.md'])
def test_every_docs_page_is_linked_from_the_hubs(hub):
  hub_path = ROOT / hub
  linked = _linked_pages(hub_path)
  missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / 'docs').glob('*.md'))
             if p.resolve() not in linked and p.resolve() != hub_path.resolve()]
  assert not missing, f'{hub} does not link to: {", ".join(missing)}'


def test_github_anchors_of_tricky_headings():
  # Anchors as GitHub renders them (checked by hand on github.com pages).
  assert markdown_docs.github_anchor('1. Method and architecture') == (
      '1-method-and-architecture')
  assert markdown_docs.github_anchor(
      'The fast conv path (`model.conv_impl`)') == 'the-fast-conv-path-modelconv_impl'
  assert markdown_docs.github_anchor(
      'Full size (256x256, width 1.0): see [Running on GPU and TPU](a.md)') == (
          'full-size-256x256-width-10-see-running-on-gpu-and-tpu')
  assert markdown_docs.anchors('# A\n\n## A\n\n```\n# not a heading\n```\n') == {
      'a', 'a-1'}


def test_the_checker_finds_broken_links(tmp_path):
  # The checks above must be able to fail: a page with one link of each kind.
  (tmp_path / 'docs').mkdir()
  (tmp_path / 'docs' / 'b.md').write_text('# Bee\n')
  page = tmp_path / 'docs' / 'a.md'
  page.write_text('# A\n\n[ok](b.md#bee) [gone](c.md) [bad anchor](b.md#wasp)\n'
                  '[self](#a) [no](#nope) [abs](/etc/passwd) '
                  '[wrapped\nlink](b.md#nothing) [up](../../x.md)\n\n'
                  '```bash\n[in code](x.md)\n```\n'
                  'Inline `[code](y.md)` is not a link.\n')
  problems = _broken_links(page, root=tmp_path)
  assert [p.split(': (')[1].split(')')[0] for p in problems] == [
      'c.md', 'b.md#wasp', '#nope', '/etc/passwd', 'b.md#nothing',
      '../../x.md'], problems
