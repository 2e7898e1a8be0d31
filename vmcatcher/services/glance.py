"""``vmcatcher_glance``: make Glance's images of ours equal to the verified, selected cache.

One run (docs/glance.md, "How a run converges"):

1. takes the run lock (``<cache>/.vmcatcher-glance.lock``: one run per cache),
   clears the work directory of killed runs and reads Glance's images carrying
   our tag (*actual state*);
2. under the cache lock (:class:`~vmcatcher.cache.lock.CacheLock`), reads the
   *desired state* (images selected for caching, available, and in the cache
   with the size and sha512 the list gives), plans
   (:func:`vmcatcher.glance.plan.plan`) and opens the files to upload; then
   releases the lock, so ``vmcatcher_cache`` is not held up by uploads. An
   open file keeps its bytes even if the cache expires it meanwhile;
3. carries the actions out one at a time. An upload creates the image record
   (queued, already tagged), streams the bytes and checks Glance's sha512
   against the list's; a killed run leaves at most that one unfinished image,
   which the next run removes. A failed image is logged and the others go on;
   the run then exits 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from vmcatcher.cache.index import same_bytes
from vmcatcher.cache.layout import CacheLayout, Role
from vmcatcher.cache.lock import CacheLock
from vmcatcher.db.models import ImageDefinition
from vmcatcher.errors import ConfigError, GlanceError, ImageFormatError, VmcatcherError
from vmcatcher.glance import formats
from vmcatcher.glance.client import GlanceClient, RefusedError
from vmcatcher.glance.metadata import image_name, image_properties
from vmcatcher.glance.model import (
    DEFAULT_TAG,
    PROP_IDENTIFIER,
    PROP_SOURCE_FORMAT,
    Action,
    ActionKind,
    ActualImage,
    DesiredImage,
    ImageStatus,
    Visibility,
)
from vmcatcher.glance.plan import foreign_images, plan
from vmcatcher.names import is_safe_name
from vmcatcher.services.availability import available_query
from vmcatcher.services.cache import index_entry, stored_list_fields
from vmcatcher.timeutil import utcnow

log = logging.getLogger("vmcatcher.glance")

RUN_LOCK = ".vmcatcher-glance.lock"
WORK_SUBDIR = ".vmcatcher-glance"
RUN_PREFIX = "run-"
DEFAULT_CONVERT_TIMEOUT = 3600.0
HASH_CHUNK = 1024 * 1024
MAX_MAP_BYTES = 1 << 20
_HEX = frozenset("0123456789abcdef")


def glance_run_lock(cache_dir: str | os.PathLike[str]) -> CacheLock:
    """One ``vmcatcher_glance`` per cache: a second one would remove the first's upload."""
    return CacheLock(cache_dir, wait=False, filename=RUN_LOCK, command="vmcatcher_glance")


@dataclass(frozen=True)
class ProjectMap:
    """Projects an image is shared with, by subscription UUID or by the list's VO."""

    subscriptions: dict[str, frozenset[str]] = field(default_factory=dict)
    vos: dict[str, frozenset[str]] = field(default_factory=dict)

    def projects(self, subscription: str, vo: str | None) -> frozenset[str]:
        found = self.subscriptions.get(subscription, frozenset())
        if vo:
            found = found | self.vos.get(vo, frozenset())
        return found


def load_project_map(path: str | os.PathLike[str]) -> ProjectMap:
    """Read the mapping file (JSON, docs/glance.md "Sharing with projects")."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MAP_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"Cannot read the projects map '{path}': {error.strerror}") from error
    if len(raw) > MAX_MAP_BYTES:
        raise ConfigError(f"The projects map '{path}' is larger than {MAX_MAP_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ConfigError(f"The projects map '{path}' is not JSON: {error}") from error
    if not isinstance(data, dict) or set(data) - {"subscriptions", "vos"}:
        raise ConfigError(
            f"The projects map '{path}' must be an object with 'subscriptions' and/or 'vos'"
        )
    parsed: dict[str, dict[str, frozenset[str]]] = {}
    for section in ("subscriptions", "vos"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"The projects map '{path}': '{section}' must be an object")
        parsed[section] = {}
        for key, projects in table.items():
            if isinstance(projects, str):
                projects = [projects]
            if not isinstance(projects, list) or not all(
                isinstance(p, str) and p and len(p) <= 255 for p in projects
            ):
                raise ConfigError(
                    f"The projects map '{path}': {section} '{key}' must map to project IDs"
                )
            parsed[section][str(key)] = frozenset(projects)
    return ProjectMap(parsed["subscriptions"], parsed["vos"])


@dataclass
class GlanceOptions:
    cloud: str | None = None
    tag: str = DEFAULT_TAG
    name_prefix: str = ""
    visibility: Visibility = Visibility.PRIVATE
    projects: ProjectMap = field(default_factory=ProjectMap)
    disk_format: str | None = None
    work_dir: Path | None = None
    convert_timeout: float = DEFAULT_CONVERT_TIMEOUT
    dry_run: bool = False
    progress: bool = False
    wait: bool | float = False
    api_timeout: float = 300.0


@dataclass
class SyncReport:
    """What a run planned and how it went (the command prints it)."""

    actions: list[Action]
    done: int = 0
    failed: int = 0
    kept: int = 0  # images that could not be deleted: deactivated, retried next run

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def synchronise(
    layout: CacheLayout,
    session: Session,
    options: GlanceOptions,
    client: GlanceClient | None = None,
    now: datetime | None = None,
) -> SyncReport:
    """One run of ``vmcatcher_glance`` (see the module documentation)."""
    with glance_run_lock(layout.cache_dir), ExitStack() as held:
        if client is None:
            from vmcatcher.glance.client import connect

            client = connect(options.cloud, options.api_timeout)
        work_root = options.work_dir or layout.cache_dir / WORK_SUBDIR
        if not options.dry_run:
            _clear_work_dir(work_root)
        actual = client.images(options.tag)
        actual = [_with_members(client, image) for image in actual]
        for image in foreign_images(actual):
            log.warning("Image %s carries the tag '%s' but was not created by vmcatcher_glance "
                        "(no %s property); left alone.", image.id, options.tag,
                        PROP_IDENTIFIER)  # fmt: skip
        with CacheLock(layout.cache_dir, wait=options.wait):
            desired = read_desired(session, layout, options, now or utcnow())
            steps = plan(desired, actual)
            if options.dry_run:
                return SyncReport(steps)
            files = _open_uploads(steps, held)
        report = SyncReport(steps)
        work = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=work_root))
        held.callback(shutil.rmtree, work, True)
        Runner(client, options, files, work, report).run()
        return report


def _clear_work_dir(root: Path) -> None:
    """Create the work directory; remove what killed runs left in it (only our run-* dirs)."""
    try:
        root.mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"Cannot create work directory '{root}': {error.strerror}") from error
    for child in root.iterdir():
        if child.name.startswith(RUN_PREFIX) and child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)


def _with_members(client: GlanceClient, image: ActualImage) -> ActualImage:
    if image.visibility != Visibility.SHARED.value or not image.identifier:
        return image
    from dataclasses import replace

    return replace(image, members=client.members(image.id))


def _valid_sha512(value: object) -> bool:
    return isinstance(value, str) and len(value) == 128 and set(value) <= _HEX


def read_desired(
    session: Session, layout: CacheLayout, options: GlanceOptions, now: datetime
) -> dict[str, DesiredImage]:
    """Every image selected for caching, available, and cached with the list's bytes."""
    layout.load_indexes()
    cache_index = layout.cache_index
    query = available_query(now).where(ImageDefinition.cache == 1)
    decoded: dict[int, tuple[dict, dict[str, dict]]] = {}
    found: dict[str, DesiredImage] = {}
    for sub, definition, instance, image in session.execute(query):
        identifier = definition.identifier
        if not is_safe_name(identifier):
            log.error("Image identifier %r cannot be used; ignored.", identifier)
            continue
        if instance.id not in decoded:
            decoded[instance.id] = stored_list_fields(instance)
        list_metadata, images = decoded[instance.id]
        entry = index_entry(sub, definition, instance, image, list_metadata, images)
        cached = cache_index.get(identifier)
        if cached is None or not same_bytes(cached, entry):
            log.info("Image '%s' is not in the cache (yet); not published.", identifier)
            continue
        if not _valid_sha512(entry["sha512"]):
            log.error("Image '%s' has no valid sha512; not published.", identifier)
            continue
        try:
            path = layout.path(Role.CACHE, str(cached.get("filename", identifier)))
            size = int(entry["size"])
        except (VmcatcherError, TypeError, ValueError) as error:
            log.error("Image '%s': %s; not published.", identifier, error)
            continue
        if not path.is_file() or path.is_symlink() or path.stat().st_size != size:
            log.warning("Image '%s' is missing or the wrong size in the cache.", identifier)
            continue
        entry["filename"] = path.name
        record = images.get(identifier, {})
        found[identifier] = DesiredImage(
            identifier=identifier,
            sha512=str(entry["sha512"]),
            size=size,
            path=path,
            name=image_name(entry, options.name_prefix),
            properties=image_properties(entry),
            visibility=options.visibility,
            members=options.projects.projects(sub.identifier, list_metadata.get("ad:vo"))
            if options.visibility is Visibility.SHARED
            else frozenset(),
            declared_format=str(record.get("hv:format", ""))[:40],
        )
    return found


def _open_uploads(steps: list[Action], held: ExitStack) -> dict[str, int]:
    """Open every file to upload while the cache lock is held (the bytes stay ours)."""
    files: dict[str, int] = {}
    for action in steps:
        if action.kind is not ActionKind.UPLOAD or action.desired is None:
            continue
        desired = action.desired
        try:
            fd = os.open(desired.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            log.error("Image '%s' cannot be opened: %s", desired.identifier, error.strerror)
            continue
        held.callback(os.close, fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != desired.size:
            log.error("Image '%s' changed in the cache; not published.", desired.identifier)
            continue
        files[desired.identifier] = fd
    return files


def _sha512_of_fd(fd: int, size: int) -> str:
    digest = hashlib.sha512()
    offset = 0
    while offset < size:
        block = os.pread(fd, min(HASH_CHUNK, size - offset), offset)
        if not block:
            break
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


@dataclass
class _Prepared:
    """What to upload for one image: an open descriptor, its size, format and sha512."""

    fd: int
    size: int
    disk_format: str
    sha512: str
    source_format: str | None = None  # set when converted


class Runner:
    """Carries a plan out, one action at a time; failures are counted, not raised."""

    def __init__(self, client: GlanceClient, options: GlanceOptions, files: dict[str, int],
                 work: Path, report: SyncReport) -> None:  # fmt: skip
        self.client = client
        self.options = options
        self.files = files
        self.work = work
        self.report = report
        self.failed_uploads: set[str | None] = set()
        self._close_later: list[int] = []

    def run(self) -> None:
        handlers: dict[ActionKind, Callable[[Action], None]] = {
            ActionKind.REMOVE_LEFTOVER: self.remove_leftover,
            ActionKind.UPLOAD: self.upload,
            ActionKind.REACTIVATE: self.reactivate,
            ActionKind.UPDATE: self.update,
            ActionKind.MEMBERS: self.members,
            ActionKind.RETIRE: self.retire,
        }
        for action in self.report.actions:
            if action.after_upload and action.identifier in self.failed_uploads:
                log.info("Keeping %s: the new version of '%s' was not uploaded.",
                         action.image_id, action.identifier)  # fmt: skip
                continue
            try:
                handlers[action.kind](action)
                self.report.done += 1
            except (VmcatcherError, OSError) as error:
                if action.kind is ActionKind.UPLOAD:
                    self.failed_uploads.add(action.identifier)
                self.report.failed += 1
                if isinstance(error, OSError):
                    log.error("Image '%s': %s: %s", action.identifier, action.kind.value,
                              error.strerror or error)  # fmt: skip
                else:
                    log.error("%s", error)

    # --- actions --------------------------------------------------------------------

    def remove_leftover(self, action: Action) -> None:
        self.client.delete(action.glance_id)
        log.info("Removed unfinished upload %s of '%s'.", action.image_id, action.identifier)

    def upload(self, action: Action) -> None:
        desired = action.desired
        assert desired is not None
        fd = self.files.get(desired.identifier)
        if fd is None:
            raise GlanceError(f"Image '{desired.identifier}': not uploaded (cannot be read)")
        image_work = Path(tempfile.mkdtemp(prefix="image-", dir=self.work))
        try:
            prepared = self.prepare(desired, fd, image_work)
            self._create_and_upload(desired, prepared)
        finally:
            while self._close_later:
                os.close(self._close_later.pop())
            shutil.rmtree(image_work, ignore_errors=True)

    def prepare(self, desired: DesiredImage, fd: int, work: Path) -> _Prepared:
        """Probe the real format; unpack an OVA; convert when ``--disk-format`` asks."""
        what = f"Image '{desired.identifier}'"
        source = Path(f"/proc/self/fd/{fd}")
        target_format = self.options.disk_format
        if formats.is_tar(source):
            disk = formats.unpack_ova(source, work, what)
            found = formats.probe(disk, what)
            if self._sha512(fd, desired.size) != desired.sha512:
                raise ImageFormatError(f"{what}: the cached file's sha512 is wrong")
            return self._converted(disk, found.disk_format, target_format
                                   or formats.DEFAULT_OVA_TARGET, "ova", work, what)  # fmt: skip
        found = formats.probe(source, what, pass_fds=(fd,))
        declared = desired.declared_format.lower()
        if declared and declared not in (found.disk_format, "img", "ova"):
            log.warning("%s: the list says %r, the data is %s; using %s.",
                        what, declared, found.disk_format, found.disk_format)  # fmt: skip
        if target_format and target_format != found.disk_format:
            if self._sha512(fd, desired.size) != desired.sha512:
                raise ImageFormatError(f"{what}: the cached file's sha512 is wrong")
            return self._converted(source, found.disk_format, target_format,
                                   found.disk_format, work, what, (fd,))  # fmt: skip
        return _Prepared(fd, desired.size, found.disk_format, desired.sha512)

    def _sha512(self, fd: int, size: int) -> str:
        return _sha512_of_fd(fd, size)

    def _converted(self, source: Path, source_format: str, target_format: str,
                   recorded_format: str, work: Path, what: str,
                   pass_fds: tuple[int, ...] = ()) -> _Prepared:  # fmt: skip
        target = work / f"converted.{target_format}"
        if source_format == target_format:
            os.replace(source, target)
        else:
            formats.convert(source, source_format, target_format, target,
                            self.options.convert_timeout, what, pass_fds)  # fmt: skip
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._close_later.append(fd)
        size = os.fstat(fd).st_size
        return _Prepared(fd, size, target_format, _sha512_of_fd(fd, size), recorded_format)

    def _create_and_upload(self, desired: DesiredImage, prepared: _Prepared) -> None:
        properties = dict(desired.properties)
        if prepared.source_format:
            properties[PROP_SOURCE_FORMAT] = prepared.source_format
        image_id = self.client.create(desired.name, prepared.disk_format,
                                      desired.visibility.value, self.options.tag,
                                      properties)  # fmt: skip
        log.info("Uploading '%s' as %s (%s, %d bytes).", desired.identifier, image_id,
                 prepared.disk_format, prepared.size)  # fmt: skip
        try:
            with os.fdopen(os.dup(prepared.fd), "rb") as handle, self._bar(desired) as bar:
                handle.seek(0)
                self.client.upload(image_id, handle, prepared.size, bar)
            uploaded = self.client.image(image_id)
            if uploaded.status is not ImageStatus.ACTIVE:
                status = uploaded.status.value if uploaded.status else "unknown"
                raise GlanceError(f"Image '{desired.identifier}': Glance left it {status}")
            if uploaded.os_hash_value and uploaded.os_hash_value != prepared.sha512:
                raise GlanceError(
                    f"Image '{desired.identifier}': Glance's sha512 differs from the list's"
                )
        except BaseException:
            try:
                self.client.delete(image_id)
            except VmcatcherError as error:
                log.error("Cannot remove the failed upload %s: %s", image_id, error)
            raise
        if desired.members:
            for project in sorted(desired.members):
                self.client.add_member(image_id, project)
        log.info("Published '%s' as %s.", desired.identifier, image_id)

    @contextmanager
    def _bar(self, desired: DesiredImage) -> Iterator[Callable[[int], None] | None]:
        if not (self.options.progress and sys.stderr.isatty()):
            yield None
            return
        from tqdm import tqdm

        with tqdm(total=desired.size, desc=desired.name[:36], unit="B", unit_scale=True,
                  unit_divisor=1024, leave=False) as bar:  # fmt: skip
            yield bar.update

    def reactivate(self, action: Action) -> None:
        self.client.reactivate(action.glance_id)
        log.info("Reactivated %s ('%s').", action.image_id, action.identifier)

    def update(self, action: Action) -> None:
        current = self.client.image(action.glance_id)
        operations: list[dict[str, Any]] = []
        if action.name is not None:
            operations.append({"op": "replace", "path": "/name", "value": action.name})
        if action.visibility is not None:
            operations.append({"op": "replace", "path": "/visibility", "value": action.visibility})
        for key, value in sorted(action.set_properties.items()):
            op = "replace" if key in current.properties else "add"
            operations.append({"op": op, "path": f"/{key}", "value": value})
        for key in action.remove_properties:
            if key in current.properties:
                operations.append({"op": "remove", "path": f"/{key}"})
        self.client.patch(action.glance_id, operations)
        log.info("Updated %s ('%s'): %s.", action.image_id, action.identifier, action.reason)

    def members(self, action: Action) -> None:
        for project in action.add_members:
            self.client.add_member(action.glance_id, project)
        for project in action.remove_members:
            self.client.remove_member(action.glance_id, project)
        log.info("Shared %s with %s.", action.image_id, action.reason)

    def retire(self, action: Action) -> None:
        try:
            self.client.delete(action.glance_id)
            log.info("Deleted %s ('%s'): %s.", action.image_id, action.identifier, action.reason)
            return
        except RefusedError as error:
            refusal = error
        current = self.client.image(action.glance_id)
        if current.visibility != Visibility.PRIVATE.value:
            self.client.patch(action.glance_id, [{"op": "replace", "path": "/visibility",
                                                  "value": Visibility.PRIVATE.value}])  # fmt: skip
        if current.status is ImageStatus.ACTIVE:
            self.client.deactivate(action.glance_id)
        self.report.kept += 1
        log.warning(
            "Image %s ('%s') cannot be deleted (HTTP %d, in use or protected): deactivated and "
            "made private; deleting it is retried on the next run.",
            action.image_id, action.identifier, refusal.status,
        )  # fmt: skip


def publish(
    directories: tuple[str, str, str], database_url: str, options: GlanceOptions, echo: bool = False
) -> SyncReport:
    """The whole command: open the cache layout and the database, then :func:`synchronise`."""
    from vmcatcher.db.engine import open_database
    from vmcatcher.db.migrate import ensure_schema

    layout = CacheLayout(*directories)
    database = open_database(database_url, echo=echo)
    try:
        ensure_schema(database)
        with database.session() as session:
            return synchronise(layout, session, options)
    finally:
        database.close()
