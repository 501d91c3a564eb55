"""Draw the app's PNG icons (192 and 512 px) from the same shapes as icon.svg; run by hand."""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def draw(size: int) -> Image.Image:
    """The car-on-navy icon at `size` pixels (coordinates from icon.svg's 512 grid)."""
    k = size / 512
    img = Image.new("RGB", (size, size), "#1d2b3a")
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([96 * k, 220 * k, 416 * k, 340 * k], radius=36 * k, fill="#ffffff")
    d.polygon([(150 * k, 220 * k), (190 * k, 150 * k), (322 * k, 150 * k), (362 * k, 220 * k)],
              fill="#ffffff")  # fmt: skip
    for cx in (170, 342):
        d.ellipse([(cx - 34) * k, 316 * k, (cx + 34) * k, 384 * k], fill="#0a7d32")
    return img


if __name__ == "__main__":
    for px in (192, 512):
        draw(px).save(HERE / f"icon-{px}.png", optimize=True)
