"""Where outputs live: a local folder, a shared file system (NFS, EFS, a PVC) or an object store (s3://, gs://).

`Location(text)` is a file or folder named by a path or a URI, read and written through `pyarrow.fs`. Its
methods are the few of `pathlib.Path` the stages use (`/`, `name`, `parent`, `exists`, `read_text`,
`write_text`, ...), so a stage does not care where it writes. Credentials and endpoint come from the standard
environment, as the AWS and Google SDKs read it: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_REGION,
AWS_ENDPOINT_URL (MinIO, moto, Ceph), an instance profile, IRSA's web identity token on EKS;
GOOGLE_APPLICATION_CREDENTIALS or workload identity on GKE. Nothing here reads or logs a secret.

Every write replaces a whole file at once, and nothing appends: on a local disk the bytes go to a hidden
sibling (`.NAME.tmp-XXXX`) that is then renamed over the file; on an object store one upload replaces the
object, which readers see whole or not at all (S3 and GCS are strongly consistent). A crash mid-write leaves
the old file as it was, and its hidden sibling, which the next write of the file removes (a file has one
writer: the run that owns its folder).
"""

from __future__ import annotations

import glob
import io
import os
import uuid
from pathlib import Path

import pyarrow.fs

OBJECT_STORES = ("s3://", "gs://", "gcs://")


def is_object_store(text: str) -> bool:
    return text.startswith(OBJECT_STORES)


class Location:
    """A file or folder by path or URI (see the module docstring)."""

    def __init__(self, text: str | Path | Location):
        if isinstance(text, Location):
            self.fs, self.path, self.scheme = text.fs, text.path, text.scheme
            return
        text = str(text).removeprefix("file://")
        if is_object_store(text):
            self.scheme, _, rest = text.partition("://")
            self.path = rest.strip("/")
            self.fs = pyarrow.fs.FileSystem.from_uri(f"{self.scheme}://{self.path.split('/')[0]}")[0]
        else:
            self.scheme, self.path, self.fs = "", str(Path(text).expanduser().resolve()), pyarrow.fs.LocalFileSystem()

    def _at(self, path: str) -> Location:
        child = object.__new__(Location)
        child.fs, child.path, child.scheme = self.fs, path, self.scheme
        return child

    def __truediv__(self, name: str) -> Location:
        return self._at(f"{self.path.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        return self._at(self.path.rstrip("/").rsplit("/", 1)[0] or "/")

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pyarrow.fs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pyarrow.fs.FileType.Directory

    def files(self) -> list[Location]:
        """The files directly inside this folder, by name; none when it does not exist."""
        found = self.fs.get_file_info(pyarrow.fs.FileSelector(self.path, allow_not_found=True))
        return [self._at(f.path) for f in sorted(found, key=lambda f: f.path) if f.type == pyarrow.fs.FileType.File]

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open_lines(self) -> io.BufferedReader:
        """The file as a binary stream to iterate line by line."""
        return io.BufferedReader(self.fs.open_input_file(self.path))

    def write_bytes(self, data: bytes) -> Location:
        """Replace the file with `data` at once (see the module docstring); parent folders are made as needed."""
        if self.scheme:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{os.path.dirname(self.path)}/.{self.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        for orphan in Path(self.path).parent.glob(f".{glob.escape(self.name)}.tmp-*"):  # a killed write's
            orphan.unlink(missing_ok=True)
        return self

    def write_text(self, text: str, encoding: str = "utf-8") -> Location:
        return self.write_bytes(text.encode(encoding))

    def delete(self) -> None:
        """Delete this file or folder (with everything in it), if it is there."""
        kind = self.fs.get_file_info(self.path).type
        if kind == pyarrow.fs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif kind == pyarrow.fs.FileType.File:
            self.fs.delete_file(self.path)

    def upload(self, folder: str | Path) -> Location:
        """Replace this folder with a copy of the local `folder`. Not atomic: write a marker after it."""
        self.delete()
        if not self.scheme:  # copy_files makes no folders on a local disk (an object store needs none)
            os.makedirs(self.path)
        pyarrow.fs.copy_files(
            str(folder), self.path, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=self.fs
        )
        return self


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def save_figure(fig, location: Location) -> Location:
    """Write a matplotlib figure as PNG to `location`."""
    return location.write_bytes(figure_png(fig))
