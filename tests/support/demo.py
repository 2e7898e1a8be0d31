"""``make demo``: the main job end to end on an embedded default, as a shell transcript.

Everything happens in a fresh temporary directory: a SQLite database, a Grid
test CA with an endorser (generated on the spot), a TLS test CA, and an HTTPS
server on 127.0.0.1 publishing a signed image list and its images. The
commands are the installed ones, typed as an admin would type them, and each is
echoed before its output. The demo exits non-zero as soon as a step does not
end the way it should, so it doubles as a smoke test. Nothing keeps running
after it ends.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.commands import clean_env, command_path
from tests.support.lists import image_bytes, list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign
from tests.support.servers import TestServer
from tests.support.tls import make_test_pki

LIST_ID = "6ad1ed3f-6dd4-4d3b-9c8a-demo00000001"
IMAGES = {
    "c0ffee00-0000-4000-8000-000000000001": "alma-9",
    "c0ffee00-0000-4000-8000-000000000002": "ubuntu-24.04",
    "c0ffee00-0000-4000-8000-000000000003": "debian-12",
}


class Demo:
    """Runs commands in ``workdir`` and prints them like a terminal session."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = clean_env(env)
        self.env["PATH"] = f"{Path(command_path('vmcatcher_cache')).parent}:{self.env['PATH']}"

    def say(self, text: str) -> None:
        print(f"\n# {text}", flush=True)

    def run(self, name: str, *args: str, expect: int = 0) -> str:
        shown = " ".join(shlex.quote(a) for a in (name, *args))
        print(f"$ {shown}", flush=True)
        completed = subprocess.run(
            [command_path(name), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        sys.stdout.write(completed.stdout)
        if completed.stdout and not completed.stdout.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.write(completed.stderr)
        sys.stdout.flush()
        if completed.returncode != expect:
            raise SystemExit(
                f"demo failed: '{shown}' exited {completed.returncode}, expected {expect}"
            )
        return completed.stdout

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise SystemExit(f"demo failed: {what}")


def publish(server: TestServer, pki: TestPKI, version: str, contents: dict[str, bytes]) -> None:
    """Serve the images and a signed list naming them, as a publisher would."""
    images = []
    for uuid, data in contents.items():
        server.add(f"/images/{uuid}", data)
        images.append(
            make_image(
                uuid,
                data=data,
                uri=server.url(f"/images/{uuid}"),
                title=IMAGES[uuid],
                version=version,
                extra={"ad:mpuri": f"https://marketplace.example.org/{IMAGES[uuid]}"},
            )
        )
    doc = make_image_list(
        LIST_ID,
        server.url("/image.list"),
        version,
        images,
        pki.endorser.subject,
        pki.endorser.issuer,
        extra={"ad:vo": "demo.vo.example.org"},
    )
    server.add("/image.list", sign(list_payload(doc), pki.endorser))


def show_events(demo: Demo, log: Path, start: int) -> int:
    """Print the events the example handler logged since line ``start``."""
    lines = log.read_text().splitlines() if log.exists() else []
    for line in lines[start:]:
        record = json.loads(line)
        print(
            f"  event {record['VMCATCHER_EVENT_TYPE']:<16} "
            f"{record['VMCATCHER_EVENT_FILENAME'] or '-':<56} {record['VMCATCHER_EVENT_DC_TITLE']}"
        )
    return len(lines)


def listing(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            print(f"  {path.relative_to(directory.parent)}  ({path.stat().st_size} bytes)")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vmcatcher-demo-") as tmp:
        workdir = Path(tmp)
        grid = TestPKI()
        certs = grid.write_ca_dir(workdir / "certificates")
        tls = make_test_pki(workdir / "tls")
        shutil.copy(tls.ca_cert, certs / f"{tls.ca_hash}.0")  # the web server's CA, for igtf
        env = {
            "VMCATCHER_RDBMS": f"sqlite:///{workdir / 'vmcatcher.db'}",
            "VMCATCHER_DIR_CERT": str(certs),
        }
        demo = Demo(workdir, env)
        print(f"vmcatcher demo in {workdir}")
        print(f"  VMCATCHER_RDBMS={env['VMCATCHER_RDBMS']}")
        print(f"  VMCATCHER_DIR_CERT={certs}  (a Grid test CA with CRLs, and the web server's CA)")

        with TestServer(tls=tls) as server:
            contents = {uuid: image_bytes(name, 256 * 1024)[0] for uuid, name in IMAGES.items()}
            publish(server, grid, "1.0", contents)
            list_url = server.url("/image.list")
            run_demo(demo, workdir, grid, server, list_url, contents)
        print("\ndemo finished: every step behaved as expected; nothing is left running.")
    return 0


def run_demo(demo, workdir, grid, server, list_url, contents) -> None:
    first, second, third = IMAGES
    handler = "vmcatcher_eventHndlExpl --datetime --output_file events.log"
    events_log = workdir / "events.log"

    demo.say("Who may sign image lists: an endorser with the x.509 credential of the publisher.")
    demo.run("vmcatcher_endorser", "-C", "-e", "Demo Endorser", "--dn", grid.endorser.subject,
             "-I", grid.endorser.issuer)  # fmt: skip
    demo.run("vmcatcher_endorser", "-l")

    demo.say("Subscribe to the signed list over HTTPS, verifying the server against the CA dir.")
    demo.run("vmcatcher_subscribe", "-s", list_url, "--uri-trustanchor-set", "igtf")
    demo.run("vmcatcher_subscribe", "-l")
    demo.say("Images are known (state 0) but no list version is imported yet.")
    out = demo.run("vmcatcher_image", "-l")
    demo.check(out.count("\t0\t") == 3, "three images in state 0 after subscribing")

    demo.say("Update: download, verify the signature and import the list.")
    demo.run("vmcatcher_subscribe", "-U", "-v")
    out = demo.run("vmcatcher_image", "-l")
    demo.check(out.count("\t2\t") == 3, "three images in state 2 (available) after -U")

    demo.say("Select two images for the cache: state 3 (subscribed and available).")
    demo.run("vmcatcher_image", "-a", "-u", first)
    demo.run("vmcatcher_image", "-a", "-u", second)
    out = demo.run("vmcatcher_image", "-l")
    demo.check(out.count("\t3\t") == 2, "two images in state 3 after -a")

    demo.say("Cache them, running the example event handler for every event.")
    for sub in ("cache/partial", "cache/expired"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    demo.run("vmcatcher_cache", "-v", "-x", handler)
    listing(workdir / "cache")
    seen = show_events(demo, events_log, 0)
    demo.check((workdir / "cache" / first).is_file(), "first image cached")

    demo.say("The publisher releases 2.0: drops one cached image and rebuilds the other.")
    new_contents = {second: image_bytes("ubuntu-24.04 rebuilt", 256 * 1024)[0],
                    third: contents[third]}  # fmt: skip
    publish(server, grid, "2.0", new_contents)
    demo.run("vmcatcher_subscribe", "-U", "-v")
    demo.run("vmcatcher_image", "-l")
    demo.say("The cache expires both old files (Expire events) and fetches the rebuilt image.")
    demo.run("vmcatcher_cache", "-v", "-x", handler)
    listing(workdir / "cache")
    show_events(demo, events_log, seen)
    demo.check(not (workdir / "cache" / first).exists(), "dropped image expired")
    demo.check((workdir / "cache" / second).is_file(), "rebuilt image cached")

    demo.say("One line per event in the handler's log (first line shown):")
    print(events_log.read_text().splitlines()[0][:400] + " ...")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
