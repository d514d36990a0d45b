"""The optimisation as a movie: ``--frames N`` keeps the image every N iterations.

``FrameRecorder`` wraps the inversion's callback (the progress line), so a run without
``--frames`` never creates one and pays nothing. It keeps uint8 frames (a grid when a batch of
images is optimised) and writes ``evolution.gif`` (Pillow, each frame labelled with its
iteration), ``evolution.mp4`` when imageio-ffmpeg is installed, and the frames as PNGs on
request. The callback runs at the loop's host syncs (every iteration on the CPU, every
``sync_every`` on CUDA): a frame is taken at the first sync at or after each multiple of N.
"""
import io
import math
import os

from .. import backend
from ..backend import np

GIF_FRAME_MS = 120


class FrameRecorder:
    """``callback(step, x, terms)`` for ``invert``: records a frame every ``every`` steps and
    calls ``inner`` (the progress line) on every call."""

    def __init__(self, rep, every, inner=None, cell=None):
        if int(every) < 1:
            raise ValueError(f"--frames must be >= 1, got {every}")
        self.rep, self.every, self.inner, self.cell = rep, int(every), inner, cell
        self.frames, self.steps, self._next = [], [], 0

    def __call__(self, step, x, terms):
        if self.inner is not None:
            self.inner(step, x, terms)
        if step >= self._next:
            self.add(self._image(x), step)
            self._next = (step // self.every + 1) * self.every

    def _image(self, x):
        """uint8 image of the input-space batch x (R, C, H, W): one image or a grid of all."""
        host = backend.asnumpy(x)
        tiles = [self.rep.deprocess(host[i:i + 1]) for i in range(host.shape[0])]
        if len(tiles) == 1:
            return tiles[0]
        from ..images import grid

        cols = math.ceil(math.sqrt(len(tiles)))
        return grid(tiles, ncols=cols, cell=self.cell or max(tiles[0].shape[:2]), pad=2)

    def add(self, image, step):
        self.frames.append(np.asarray(image))
        self.steps.append(int(step))

    def finish(self, result):
        """Add the final image (after the last update) as the last frame, labelled with the
        number of iterations run."""
        images = result.image if isinstance(result.image, list) else [result.image]
        if len(images) == 1:
            final = images[0]
        else:
            from ..images import grid

            cols = math.ceil(math.sqrt(len(images)))
            final = grid(images, ncols=cols, cell=self.cell or max(images[0].shape[:2]), pad=2)
        self.add(final, result.metrics.get("iterations", len(self.steps)))

    def labelled(self):
        """The frames as PIL RGB images, each with a strip below saying its iteration."""
        from PIL import Image, ImageDraw

        from ..images import _font, _rgb

        out = []
        for frame, step in zip(self.frames, self.steps):
            a = _rgb(frame)
            h, w = a.shape[:2]
            canvas = Image.new("RGB", (w, h + 18), (255, 255, 255))
            canvas.paste(Image.fromarray(a), (0, 0))
            ImageDraw.Draw(canvas).text((4, h + 2), f"iteration {step}", fill=(0, 0, 0),
                                        font=_font(12))
            out.append(canvas)
        return out

    def write(self, out, png_frames=False, name="evolution"):
        """Write ``name``.gif (and .mp4 with imageio-ffmpeg, frames/*.png on request) in
        ``out``; returns the paths written."""
        from ..images import atomic_open, save_png

        if not self.frames:
            return []
        pics = self.labelled()
        buf = io.BytesIO()
        pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:],
                     duration=GIF_FRAME_MS, loop=0)
        gif = os.path.join(out, f"{name}.gif")
        with atomic_open(gif) as f:
            f.write(buf.getvalue())
        paths = [gif]
        mp4 = _write_mp4(os.path.join(out, f"{name}.mp4"), pics)
        paths += [mp4] if mp4 else []
        if png_frames:
            folder = os.path.join(out, f"{name}-frames")
            os.makedirs(folder, exist_ok=True)
            for pic, step in zip(pics, self.steps):
                p = os.path.join(folder, f"frame_{step:05d}.png")
                save_png(p, pic)
                paths.append(p)
        return paths


def _write_mp4(path, pics):
    """An H.264 MP4 of the frames when imageio-ffmpeg is installed, else None."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    w, h = pics[0].size
    w2, h2 = w + w % 2, h + h % 2  # even sizes for yuv420p
    tmp = path + ".part.mp4"
    writer = imageio_ffmpeg.write_frames(tmp, (w2, h2), fps=1000 / GIF_FRAME_MS,
                                         macro_block_size=1)
    writer.send(None)
    for pic in pics:
        a = np.zeros((h2, w2, 3), dtype=np.uint8)
        a[:h, :w] = np.asarray(pic)
        writer.send(np.ascontiguousarray(a))
    writer.close()
    os.replace(tmp, path)
    return path
