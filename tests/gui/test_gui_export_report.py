"""The Export panel's report preview: the round's Markdown rendered (headings, tables), and nothing in it, which
quotes names a user chose, is fetched from disk or run as HTML."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage, QTextDocument

from app.ui.panels.export import ReportView


def _tables(doc: QTextDocument) -> int:
    n, frames = 0, [doc.rootFrame()]
    while frames:
        f = frames.pop()
        n += type(f).__name__ == "QTextTable"
        frames += f.childFrames()
    return n


def test_report_is_rendered_markdown_and_keeps_its_source(qtbot):
    view = ReportView()
    qtbot.addWidget(view)
    md = "# Round 1\n\n| | accuracy |\n|---|---|\n| before | 0.921 |\n| after | 0.947 |\n"
    view.show_markdown(md)
    assert view.markdown == md
    assert view.toPlainText().splitlines()[0] == "Round 1"  # a heading, not "# Round 1"
    assert "|---|" not in view.toPlainText()
    assert _tables(view.document()) == 1


def test_report_fetches_no_image_and_runs_no_html_named_in_a_label(qtbot, tmp_path):
    img = tmp_path / "secret.png"
    QImage(8, 8, QImage.Format_RGB32).save(str(img))
    view = ReportView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    url = QUrl.fromLocalFile(str(img))
    view.show_markdown(f"* no labelled windows for ![x]({url.toString()}), <b>standing</b>\n")
    # no image left for Qt's image handler to read from disk when it paints: the link is shown as its text
    assert view.toPlainText() == f"no labelled windows for [image {url.toString()}], <b>standing</b>"
    assert not _images(view.document())
    view.grab()


def _images(doc: QTextDocument) -> list[str]:
    out, block = [], doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            f = it.fragment().charFormat()
            if f.isImageFormat():
                out.append(f.toImageFormat().name())
            it += 1
        block = block.next()
    return out
