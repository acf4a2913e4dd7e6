"""The PDF of a paper rendition (R-CONV-2), drawn with pyHanko.

Every page of the original becomes a form XObject drawn, slightly reduced, above a
footer band on a new page of the same size (rotation applied); visible annotation
appearances (signature stamps, seals) are drawn too. The footer, on every page, says
that this is a paper rendition and not the signed original, the system and its owner,
the document's number and record id, the converter, the time (Vietnam time), the
rendition id and the verification URL, beside a QR code of that URL drawn as vector
rectangles from segno's matrix. Text uses an embedded TrueType font with Vietnamese
glyphs (``renditions.font_file``, default the bundled DejaVu Sans), shaped by HarfBuzz
and subset by fontTools through :mod:`pyhanko.pdf_utils.font.opentype`, with a
ToUnicode map so the text can be searched and extracted.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import segno
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

from archive.errors import ConfigError
from archive.renditions import Footer, RenderedPdf, UnrenderableOriginal

BUNDLED_FONT = Path(__file__).resolve().parent / "static" / "fonts" / "DejaVuSans.ttf"
FONT_SIZE = 6.5
LEADING = 8.0
MARGIN = 24.0  # points, around the footer band
QR_SIZE = 60.0  # points (about 21 mm): scans well when printed
BAND = QR_SIZE + 2 * 8.0  # height of the footer band
MAX_PAGES = 5000

_n = generic.NameObject


def font_path(setting: str) -> Path:
    """The configured footer font, or the bundled one; it must exist."""
    path = Path(setting).expanduser() if setting else BUNDLED_FONT
    if not path.is_file():
        raise ConfigError(f"renditions.font_file: no font file at {path}")
    return path


def footer_lines(footer: Footer, page: int, pages: int) -> list[str]:
    """The footer text of one page (Vietnamese, with the key words in English too)."""
    when = footer.local_time.strftime("%d/%m/%Y %H:%M:%S")
    return [
        "BẢN IN TỪ VĂN BẢN ĐIỆN TỬ – KHÔNG PHẢI BẢN GỐC CÓ CHỮ KÝ SỐ "
        "(paper rendition, not the signed original)",
        f"Xử lý trên hệ thống: {footer.system_name} – {footer.owner_name}",
        f"Văn bản số: {footer.number_symbol} – Mã văn bản: {footer.record_id}",
        f"Người chuyển đổi: {footer.converter} – Thời gian: {when} (giờ Việt Nam, UTC+07:00)",
        f"Mã bản in: {footer.rendition_id} – Trang {page}/{pages}",
        f"Kiểm tra bản in: {footer.verify_url}",
    ]


class PdfRenderer:
    """:class:`archive.renditions.Renderer` with pyHanko, fontTools/HarfBuzz and segno."""

    def __init__(self, font_file: str | Path = ""):
        self.font_file = font_path(str(font_file))

    @classmethod
    def from_settings(cls, settings) -> PdfRenderer:
        return cls(settings.renditions.font_file)

    def render(self, original: bytes, footer: Footer) -> RenderedPdf:
        try:
            reader = PdfFileReader(BytesIO(original), strict=False)
            if reader.encrypted:
                result = reader.decrypt("")
                if getattr(result, "status", None) is not None and \
                        result.status.name == "FAILED":
                    raise UnrenderableOriginal(footer.record_id, "the PDF is protected by "
                                                                 "a password")
            count = int(reader.root["/Pages"]["/Count"])
        except UnrenderableOriginal:
            raise
        except (PdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                OSError) as exc:
            raise UnrenderableOriginal(footer.record_id,
                                       f"not a readable PDF ({exc})") from exc
        if not 1 <= count <= MAX_PAGES:
            raise UnrenderableOriginal(footer.record_id, f"{count} pages")
        writer = PdfFileWriter(stream_xrefs=False)
        writer.document_meta.title = (f"Bản in {footer.rendition_id} – văn bản "
                                      f"{footer.number_symbol} (rendition, not the "
                                      "signed original)")
        writer.document_meta.author = footer.converter
        writer.document_meta.subject = footer.verify_url
        text = "".join(footer_lines(footer, count, count)) + "0123456789"
        font = GlyphAccumulator(writer, _font_for(self.font_file, text), FONT_SIZE)
        qr = _qr_ops(footer.verify_url)
        for index in range(count):
            try:
                self._page(writer, reader, index, count, font, qr, footer)
            except UnrenderableOriginal:
                raise
            except (PdfError, ValueError, KeyError, TypeError, AttributeError,
                    IndexError) as exc:
                raise UnrenderableOriginal(
                    footer.record_id, f"page {index + 1} cannot be read ({exc})") from exc
        out = BytesIO()
        try:
            writer.write(out)
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise UnrenderableOriginal(footer.record_id,
                                       f"the pages cannot be copied ({exc})") from exc
        return RenderedPdf(out.getvalue(), count)

    def _page(self, writer, reader, index: int, count: int, font, qr: bytes,
              footer: Footer) -> None:
        page_ref, _ = reader.find_page_for_modification(index)
        page = page_ref.get_object()
        llx, lly, urx, ury = (float(v) for v in _inherited(page, "/MediaBox"))
        width, height = urx - llx, ury - lly
        if width <= 0 or height <= 0:
            raise UnrenderableOriginal(footer.record_id, f"page {index + 1} has no size")
        rotate = int(_inherited(page, "/Rotate", 0)) % 360
        shown_w, shown_h = (height, width) if rotate in (90, 270) else (width, height)
        place = {0: (1, 0, 0, 1, -llx, -lly), 90: (0, -1, 1, 0, -lly, urx),
                 180: (-1, 0, 0, -1, urx, ury), 270: (0, 1, -1, 0, ury, -llx)}[rotate]
        scale = (shown_h - BAND) / shown_h
        dx = (shown_w - shown_w * scale) / 2
        xobjects = {_n("/P0"): writer.import_page_as_xobject(reader, index)}
        ops = [b"q", b"%g 0 0 %g %g %g cm" % (scale, scale, dx, BAND),
               b"%g %g %g %g %g %g cm" % place, b"/P0 Do"]
        for n, (ref, matrix) in enumerate(_appearances(writer, page)):
            xobjects[_n(f"/A{n}")] = ref
            ops += [b"q", b"%g %g %g %g %g %g cm" % matrix, b"/A%d Do" % n, b"Q"]
        ops.append(b"Q")
        ops += self._footer_ops(font, footer_lines(footer, index + 1, count), shown_w, qr)
        content = generic.StreamObject(stream_data=b"\n".join(ops))
        content.compress()
        resources = generic.DictionaryObject({
            _n("/XObject"): generic.DictionaryObject(xobjects),
            _n("/Font"): generic.DictionaryObject({_n("/FR"): font.as_resource()}),
        })
        writer.insert_page(PageObject(writer.add_object(content), (0, 0, shown_w, shown_h),
                                      resources))

    @staticmethod
    def _footer_ops(font, lines: list[str], page_width: float, qr: bytes) -> list[bytes]:
        """White band, a rule, the text lines and the QR code at the right."""
        qr_x = page_width - MARGIN - QR_SIZE
        ops = [b"q 1 g 0 0 %g %g re f Q" % (page_width, BAND),
               b"q 0.5 G 0.5 w %g %g m %g %g l S Q" % (MARGIN, BAND - 2, page_width - MARGIN,
                                                       BAND - 2)]
        room = qr_x - MARGIN - 8
        top = BAND - 2 - LEADING
        for n, line in enumerate(lines):
            shaped = font.shape(line)
            wide = shaped.x_advance * FONT_SIZE
            squeeze = min(1.0, room / wide) if wide else 1.0
            ops.append(b"BT 0 g /FR %g Tf %g 0 0 1 %g %g Tm " % (
                FONT_SIZE, squeeze, MARGIN, top - n * LEADING) + shaped.graphics_ops + b" ET")
        ops.append(b"q 1 0 0 1 %g %g cm " % (qr_x, (BAND - QR_SIZE) / 2) + qr + b" Q")
        return ops


def _font_for(path: Path, text: str) -> BytesIO:
    """The font cut down to the glyphs of ``text`` and scaled to 1000 units per em.

    pyHanko writes glyph widths and TJ adjustments in font units while PDF reads them
    in thousandths of an em, so a font of 2048 units per em (DejaVu Sans, most
    TrueType fonts) would be spaced twice too wide; subsetting first keeps the scaling
    quick (a fraction of a second instead of seconds for the whole font).
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont, TTLibError
    from fontTools.ttLib.scaleUpem import scale_upem

    try:
        font = TTFont(str(path))
        options = subset.Options()
        options.layout_features = ["*"]
        options.name_IDs = ["*"]
        options.notdef_outline = True
        options.drop_tables += ["FFTM"]
        options.hinting = False  # instructions are not rescaled with the outlines
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=text)
        subsetter.subset(font)
        if font["head"].unitsPerEm != 1000:
            scale_upem(font, 1000)
        out = BytesIO()
        font.save(out)
    except (TTLibError, OSError, KeyError, AssertionError) as exc:
        raise ConfigError(f"renditions.font_file: {path} is not a usable TrueType font "
                          f"({exc})") from exc
    out.seek(0)
    return out


def _inherited(page, key: str, default=None):
    node = page
    while node is not None:
        if key in node:
            return node[key]
        node = node.get("/Parent")
        node = node.get_object() if node is not None else None
    if default is None:
        raise KeyError(f"page has no {key}")
    return default


def _qr_ops(url: str) -> bytes:
    """The QR code of ``url`` as filled rectangles in a QR_SIZE square, with its quiet
    zone kept white; each run of dark modules in a row is one rectangle."""
    qr = segno.make(url, error="m", micro=False)
    matrix = qr.matrix
    modules = len(matrix) + 8  # 4 modules of quiet zone on each side
    unit = QR_SIZE / modules
    rects = []
    for row, line in enumerate(matrix):
        y = QR_SIZE - (row + 5) * unit
        col = 0
        while col < len(line):
            if line[col]:
                start = col
                while col < len(line) and line[col]:
                    col += 1
                rects.append(b"%.3f %.3f %.3f %.3f re" % ((start + 4) * unit, y,
                                                         (col - start) * unit, unit))
            else:
                col += 1
    return b"1 g 0 0 %g %g re f 0 g " % (QR_SIZE, QR_SIZE) + b" ".join(rects) + b" f"


def _appearances(writer, page):
    """(form XObject in ``writer``, matrix) for each visible annotation's normal
    appearance (e.g. a signature's stamp image), placed in its /Rect (PDF 32000 12.5.5).
    """
    annots = page.get("/Annots")
    if annots is None:
        return []
    out = []
    for annot in annots.get_object() if hasattr(annots, "get_object") else annots:
        annot = annot.get_object()
        flags = int(annot.get("/F", 0))
        if flags & 0b100011 != 0:  # invisible, hidden or no-view
            continue
        if annot.get("/Subtype") == "/Popup" or "/AP" not in annot or "/Rect" not in annot:
            continue
        normal = annot["/AP"].get("/N")
        if normal is None:
            continue
        normal = normal.get_object() if hasattr(normal, "get_object") else normal
        if isinstance(normal, generic.DictionaryObject) and \
                not isinstance(normal, generic.StreamObject):
            state = annot.get("/AS")
            normal = normal.get(state) if state is not None else None
            if normal is None:
                continue
            normal = normal.get_object()
        if not isinstance(normal, generic.StreamObject) or "/BBox" not in normal:
            continue
        matrix = _placement(annot["/Rect"], normal["/BBox"], normal.get("/Matrix"))
        if matrix is None:
            continue
        out.append((writer.import_object(normal), matrix))
    return out


def _placement(rect, bbox, form_matrix):
    """Matrix A mapping the transformed appearance box onto the annotation's rect."""
    x1, y1, x2, y2 = (float(v) for v in rect)
    rx1, rx2 = sorted((x1, x2))
    ry1, ry2 = sorted((y1, y2))
    a, b, c, d, e, f = (float(v) for v in form_matrix) if form_matrix else (1, 0, 0, 1, 0, 0)
    bx1, by1, bx2, by2 = (float(v) for v in bbox)
    corners = [(x * a + y * c + e, x * b + y * d + f)
               for x in (bx1, bx2) for y in (by1, by2)]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    w, h = max(xs) - min(xs), max(ys) - min(ys)
    if w <= 0 or h <= 0 or rx2 - rx1 <= 0 or ry2 - ry1 <= 0:
        return None
    sx, sy = (rx2 - rx1) / w, (ry2 - ry1) / h
    return (sx, 0, 0, sy, rx1 - min(xs) * sx, ry1 - min(ys) * sy)
