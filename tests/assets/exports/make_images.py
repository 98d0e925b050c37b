"""Regenerate the page images beside the export fixtures: ``python tests/assets/exports/make_images.py``.

Each line's area is filled with its own gray level on a white page, so a test can tell
from a crop's pixels which polygon was cut. Coordinates are those of the XML files.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent

# image path -> (size, [(polygon, gray)]), drawn in order
PAGES = {
    "transkribus/Doc_A/0001_p1.png": (
        (400, 300),
        [
            ([(20, 30), (220, 30), (220, 70), (20, 70)], 40),  # r1l1
            ([(20, 80), (300, 80), (300, 110), (20, 110)], 60),  # r1l2
            ([(320, 30), (390, 30), (390, 60), (320, 60)], 80),  # r2l1
        ],
    ),
    "transkribus/Doc_A/0002_p2.png": (
        (400, 300),
        [
            ([(10, 20), (210, 20), (210, 60), (10, 60)], 50),  # la
            ([(350, 150), (450, 140), (450, 180), (350, 190)], 90),  # lg, partly off the page
        ],
    ),
    "escriptorium_page/folio_1.png": (
        (300, 200),
        [
            ([(30, 20), (270, 20), (270, 60), (30, 60)], 70),
            ([(30, 100), (200, 100), (200, 140), (30, 140)], 100),
        ],
    ),
    "alto/tesseract/scan1.png": (
        (400, 300),
        [
            ([(20, 30), (220, 30), (220, 70), (20, 70)], 40),
            ([(20, 80), (300, 80), (300, 110), (20, 110)], 60),
            ([(20, 130), (170, 130), (170, 160), (20, 160)], 80),
            ([(20, 180), (170, 180), (170, 210), (20, 210)], 100),
        ],
    ),
    "alto/escriptorium/page_a.png": (
        (400, 300),
        [
            # the line's HPOS box in mid gray, its polygon inside it in dark gray
            ([(30, 30), (250, 30), (250, 100), (30, 100)], 150),
            ([(40, 40), (240, 40), (240, 80), (140, 90), (40, 80)], 40),
            ([(40, 120), (300, 120), (300, 160), (40, 160)], 60),
        ],
    ),
    # ALTO in mm10 on an 800x600 mm10 page: the 400x300 image is half that in pixels
    "alto/mm10/page.png": ((400, 300), [([(20, 30), (220, 30), (220, 70), (20, 70)], 40)]),
    # PAGE 2010-03-19 (Coords/Point): regions in light gray, their lines darker
    "prima_2010/00000123.png": (
        (300, 200),
        [
            ([(20, 20), (280, 20), (280, 80), (20, 80)], 200),  # r1
            ([(20, 100), (280, 100), (280, 180), (20, 180)], 210),  # r2
            ([(30, 25), (270, 25), (270, 45), (30, 45)], 40),  # r1l1
            ([(30, 50), (200, 50), (200, 75), (30, 75)], 60),  # r1l2
            ([(30, 110), (250, 110), (250, 140), (30, 140)], 80),  # r2l1
        ],
    ),
    # PAGE 2017-07-15, text at region level only (PRImA's example page, smaller)
    "prima_2017/SimplePage.png": (
        (400, 300),
        [
            ([(20, 20), (220, 20), (220, 50), (20, 50)], 40),  # r0
            ([(20, 60), (200, 60), (200, 180), (20, 180)], 60),  # r1
            ([(30, 210), (150, 210), (150, 240), (30, 240)], 80),  # r5
            ([(200, 210), (320, 210), (320, 240), (200, 240)], 100),  # r6
            ([(240, 60), (380, 60), (380, 180), (240, 180)], 160),  # r4, a graphic
        ],
    ),
    # an OCR-D workspace: PAGE 2018-07-15 with the pc: prefix, images named from the workspace root
    "ocrd_2018/OCR-D-IMG/OCR-D-IMG_0001.png": (
        (300, 200),
        [
            ([(30, 30), (270, 30), (270, 60), (30, 60)], 40),
            ([(30, 70), (230, 70), (230, 100), (30, 100)], 60),
        ],
    ),
}


def main() -> None:
    for rel, (size, shapes) in PAGES.items():
        image = Image.new("L", size, 255)
        draw = ImageDraw.Draw(image)
        for polygon, gray in shapes:
            draw.polygon(polygon, fill=gray)
        image.save(HERE / rel, optimize=True)


if __name__ == "__main__":
    main()
