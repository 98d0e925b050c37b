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
