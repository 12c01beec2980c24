"""Photo subcommands: `align` (every face of a photo, FFHQ-aligned, with its transform) and `paste` (edited
aligned faces back into their photo); and the `--align` plumbing of `project`, `edit` and `attribute` (align the
faces of each photo, run the command on the faces, paste the results back into the whole photo)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylemapgan.cli import CLIError, announce_threads
from stylemapgan.cli.options import add_progress_option, declare_output


def add_align_options(p: argparse.ArgumentParser) -> None:
    """`--align` and its companions on project / edit / attribute."""
    p.add_argument("--align", action="store_true",
                   help="inputs are photos: align every face the FFHQ way, work on the faces, paste the results "
                        "back into the whole photo (the photo's resolution)")
    _add_face_options(p)
    p.add_argument("--paste-feather", type=float, default=0.1,
                   help="--align: fade the pasted face in over this fraction of its side (0 to 0.5, default 0.1)")


def _add_face_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--largest", action="store_true", help="only the largest face of each photo (default: every face)")
    p.add_argument("--landmarks", choices=("mediapipe", "dlib"), default="mediapipe",
                   help="landmark model: mediapipe FaceMesh (default) or dlib's 68 points (where installed)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("align", help="find the faces of photos and align them the FFHQ way (with transforms)")
    p.add_argument("photos", nargs="+", metavar="PHOTOS", help="photo files or folders of photos")
    p.add_argument("--outdir", required=True, help="output folder: STEM_faceK.png and STEM_faceK.json per face")
    declare_output(p, "--outdir", ("outdir",), folder=True)
    p.add_argument("--size", type=int, default=256, help="side of the aligned faces in pixels (default 256)")
    _add_face_options(p)
    add_progress_option(p)
    p.set_defaults(handler=_photo_errors(cmd_align))

    p = subparsers.add_parser("paste", help="put edited aligned faces back into their photo (inverse transform)")
    p.add_argument("photo", help="the original photo")
    p.add_argument("--face", nargs=2, action="append", required=True, metavar=("FACE", "TRANSFORM"),
                   help="an edited aligned face and its transform JSON from `align` (repeat for several faces)")
    p.add_argument("--out", required=True, help="the pasted-back photo (.png, .jpg ...)")
    declare_output(p, "--out", ("out",), folder=False)
    p.add_argument("--feather", type=float, default=0.1,
                   help="fade each face in over this fraction of its side (0 to 0.5, default 0.1)")
    p.set_defaults(handler=_photo_errors(cmd_paste))


def _photo_errors(handler: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        from stylemapgan.photos import PhotoError

        try:
            return handler(args)
        except PhotoError as exc:
            raise CLIError(str(exc)) from None

    return wrapped


def photo_paths(texts: Sequence[str]) -> list[Path]:
    """Photo files as given and the image files inside given folders; a one-line error for a missing one."""
    from stylemapgan.editing.images import IMAGE_SUFFIXES

    found: list[Path] = []
    for text in texts:
        path = Path(text)
        if path.is_dir():
            inside = sorted(q for q in path.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise CLIError(f"{path}: folder holds no image files")
            found += inside
        elif not path.exists():
            raise CLIError(f"{path}: no such file (photo)")
        else:
            found.append(path)
    return found


def _stems(paths: Sequence[Path]) -> list[str]:
    from stylemapgan.editing.images import unique_stems

    return unique_stems(list(paths))


@dataclass
class AlignedPhoto:
    """A photo and its aligned faces, as the --align commands use them."""

    path: Path
    stem: str
    photo: Any  # PIL RGB, EXIF orientation applied
    faces: list[Any]  # photos.AlignedFace, left to right


def align_photos(paths: Sequence[Path], size: int, landmarks: str, largest: bool) -> list[AlignedPhoto]:
    """Load and align every photo before anything is written: a photo without a face fails the command at once."""
    from stylemapgan.photos import align_photo, load_photo, make_detector
    from stylemapgan.photos.landmarks import native_stderr_silenced

    with native_stderr_silenced():  # the landmark graphs' threads log to fd 2 at any moment: not for the user
        detector = make_detector(landmarks)
        try:
            return [AlignedPhoto(path, stem, photo, align_photo(photo, size, detector, largest, str(path)))
                    for path, stem in zip(paths, _stems(paths), strict=True)
                    for photo in [load_photo(path)]]
        finally:
            close = getattr(detector, "close", None)
            if close is not None:
                close()


def cmd_align(args: argparse.Namespace) -> int:
    from stylemapgan.photos import save_face_record

    if not 8 <= args.size <= 4096:
        raise CLIError(f"--size: must be in [8, 4096], got {args.size}")
    paths = photo_paths(args.photos)
    start = time.perf_counter()
    aligned = align_photos(paths, args.size, args.landmarks, args.largest)
    seconds = time.perf_counter() - start
    out = Path(args.outdir)  # checked before the command started (declare_output)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for item in aligned:
        for k, face in enumerate(item.faces):
            face.image.save(out / f"{item.stem}_face{k}.png")
            save_face_record(out / f"{item.stem}_face{k}.json", face, photo=str(item.path), face_index=k,
                             landmark_model=args.landmarks)
            count += 1
        if args.progress:
            print(f"{item.path}: {len(item.faces)} face(s)", file=sys.stderr)
    print(f"aligned {count} face(s) from {len(paths)} photo(s) into {out} ({seconds / len(paths):.2f} s per photo)")
    return 0


def cmd_paste(args: argparse.Namespace) -> int:
    from stylemapgan.photos import load_photo, load_transform, paste_faces

    photo = load_photo(args.photo)
    faces = [(load_photo(face), load_transform(transform)) for face, transform in args.face]
    result = paste_faces(photo, faces, args.feather)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    print(f"wrote {out} ({result.width}x{result.height}, {len(faces)} face(s))")
    return 0


# ---- --align on project / edit / attribute ---------------------------------------------------------------------


def face_items(args: argparse.Namespace, size: int, texts: Sequence[str]) -> tuple[list[AlignedPhoto], list[Any]]:
    """Photos named by `texts` -> (aligned photos, one InputItem per face, named STEM_faceK, with landmarks)."""
    from stylemapgan.editing.images import pil_to_tensor
    from stylemapgan.editing.sources import InputItem

    if not 0 <= args.paste_feather <= 0.5:
        raise CLIError(f"--paste-feather: must be in [0, 0.5], got {args.paste_feather}")
    photos = align_photos(photo_paths(texts), size, args.landmarks, args.largest)
    items = [InputItem(f"{p.stem}_face{k}", f"{p.path}#face{k}", pil_to_tensor(face.image), landmarks=face.landmarks)
             for p in photos for k, face in enumerate(p.faces)]
    announce_threads(args)
    return photos, items


def aligned_reference(args: argparse.Namespace, resolver: Any, text: str, size: int) -> Any:
    """A reference under --align: a photo file -> its largest face, aligned; anything else as without --align."""
    from stylemapgan.editing.images import IMAGE_SUFFIXES, pil_to_tensor
    from stylemapgan.editing.sources import InputItem
    path = Path(text)
    if not (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return resolver.resolve(text, "reference")
    face = align_photos([path], size, args.landmarks, largest=True)[0].faces[0]
    return InputItem(f"{path.stem}_face0", f"{path}#face0", pil_to_tensor(face.image), landmarks=face.landmarks)


def to_pil(images: torch.Tensor) -> list[Any]:
    """[N, 3, H, W] in [-1, 1] -> PIL images."""
    from PIL import Image

    from stylemapgan.utils.images import to_uint8

    return [Image.fromarray(a) for a in to_uint8(images)]


def paste_results(
    out: Path, photos: Sequence[AlignedPhoto], per_face: dict[str, torch.Tensor], suffix: str, feather: float,
    outputs: list[str], frames_as: str = "frames",
) -> None:
    """Each photo with its faces' results pasted back -> STEM{suffix}.png (one frame) or, for several frames,
    a folder STEM{suffix}_frames/ and a GIF; `per_face` maps STEMS_faceK to [F, 3, size, size]."""
    from stylemapgan.editing.images import save_animation
    from stylemapgan.photos import paste_frames
    from stylemapgan.utils.images import from_uint8

    for p in photos:
        edited = [to_pil(per_face[f"{p.stem}_face{k}"]) for k in range(len(p.faces))]
        frames = paste_frames(p.photo, p.faces, edited, feather)
        name = f"{p.stem}{suffix}"
        if len(frames) == 1:
            frames[0].save(out / f"{name}.png")
            outputs.append(f"{name}.png")
            continue
        (out / f"{name}_{frames_as}").mkdir(exist_ok=True)
        for i, frame in enumerate(frames):
            frame.save(out / f"{name}_{frames_as}" / f"{i:03d}.png")
            outputs.append(f"{name}_{frames_as}/{i:03d}.png")
        import numpy as np

        save_animation(out / f"{name}.gif", torch.cat([from_uint8(np.asarray(f)) for f in frames]))
        outputs.append(f"{name}.gif")


def save_transforms(out: Path, photos: Sequence[AlignedPhoto], outputs: list[str], landmarks: str) -> None:
    """STEM_faceK.json beside each face's outputs: its transform and landmarks (for `stylemapgan paste`)."""
    from stylemapgan.photos import save_face_record

    for p in photos:
        for k, face in enumerate(p.faces):
            save_face_record(out / f"{p.stem}_face{k}.json", face, photo=str(p.path), face_index=k,
                             landmark_model=landmarks)
            outputs.append(f"{p.stem}_face{k}.json")


def photos_record(photos: Sequence[AlignedPhoto]) -> list[dict[str, Any]]:
    return [{"photo": str(p.path), "size": list(p.photo.size), "faces": len(p.faces)} for p in photos]
