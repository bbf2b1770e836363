"""Files in the chat app (issue 13), driven with Pilot against a real relay on loopback and
the real client library: Ctrl+T sends a file, the other side's app shows its line (name,
size, type) and Ctrl+G saves a copy with identical bytes, replacing a file only when asked;
a wrong path is explained and sends nothing. Files are generated; names are invented."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from rich.text import Text
from textual.app import App
from textual.widgets import Button, Input

from client.attachments import LocalAttachment
from client.events import MessageReceived
from client.history import HistoryMessage
from client.keystore import MINIMUM
from client.session import ProfileSessions
from client.tui.app import AgechatApp
from client.tui.screens.dialogs import ConfirmDialog
from client.tui.screens.files import AttachDialog, FilesDialog, SaveAsDialog
from client.tui.screens.main import MainScreen
from client.tui.widgets.message_item import MessageItem, human_size, render_message
from tests.client.tui.test_app import SIZE, footer_text, log_text, settle, text_of
from tests.support import PASSPHRASE, drain, make_profile, open_client, open_clients, years_ago

ANA, BEN = years_ago(40), years_ago(41)


async def connected_adults(tmp_path, relay):
    ana = await make_profile(tmp_path, relay.url, "ana", ANA)
    ben = await make_profile(tmp_path, relay.url, "ben", BEN)
    async with open_clients(ana, ben) as (a, b):
        await a.contact_request("ben")
        await b.respond("ana", accept=True)
        await drain(a, 0.2), await drain(b, 0.2)
    return ana, ben


def app_of(tmp_path, handle: str) -> AgechatApp:
    return AgechatApp(ProfileSessions(tmp_path / handle, kdf=MINIMUM), passphrase=PASSPHRASE)


def file_with(folder: Path, name: str, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(secrets.token_bytes(size))
    return path


async def open_chat_with(app, pilot, handle: str) -> MainScreen:
    await settle(
        pilot,
        lambda: (
            isinstance(app.screen, MainScreen)
            and app.screen.current is not None
            and app.screen.current.handle == handle
            and app.screen.current.state == "connected"
        ),
    )
    return app.screen


async def test_adults_send_a_file_and_the_other_app_saves_an_identical_copy(relay, tmp_path):
    ana, ben = await connected_adults(tmp_path, relay)
    source = file_with(tmp_path / "ana-files", "trip notes.bin", 3_000)

    # Ana attaches the file from her chat with Ben (Ctrl+T): the dialog says it is
    # encrypted on her device, as their chat is end-to-end encrypted.
    app = app_of(tmp_path, "ana")
    async with open_client(ben) as b, app.run_test(size=SIZE) as pilot:
        main = await open_chat_with(app, pilot, "ben")
        await settle(pilot, lambda: "^t Attach" in footer_text(app))
        assert footer_text(app).rstrip().endswith("^p palette")  # still fits at 120 columns
        await pilot.press("ctrl+t")
        await settle(pilot, lambda: isinstance(app.screen, AttachDialog))
        assert "Encrypted on this device before upload" in text_of(app, "#attach-mode")
        assert str(app.screen.query_one("#attach-send", Button).label) == "Encrypt and send"
        app.screen.query_one("#attach-path", Input).value = f"  {source}  "
        app.screen.query_one("#attach-text", Input).value = "the notes"
        await pilot.press("enter")  # in the path field: sends
        await settle(pilot, lambda: app.screen is main)
        await settle(pilot, lambda: "sent ✓" in log_text(app) or "delivered" in log_text(app))
        assert "trip notes.bin  3.0 kB · application/octet-stream" in log_text(app)
        (got,) = [e.message for e in await drain(b, 1.0) if isinstance(e, MessageReceived)]
        assert (got.body, got.mode, got.attachment.state) == ("the notes", "e2ee", "ready")
        assert Path(got.attachment.path).read_bytes() == source.read_bytes()

    # Ben's app is open when Ana (her client) sends another file: its line names it.
    second = file_with(tmp_path / "ana-files", "[bold]plan.txt", 1_234_567)
    app = app_of(tmp_path, "ben")
    async with open_client(ana) as a, app.run_test(size=SIZE) as pilot:
        main = await open_chat_with(app, pilot, "ana")
        message = await a.send_file("ben", second)
        await a.wait_accepted(message.msg_id, 30)
        await settle(pilot, lambda: "plan" in log_text(app))
        log = log_text(app)
        assert "ana: the notes" in log and "trip notes.bin  3.0 kB" in log
        # The name as sent, brackets and all (never markup), its size and its type.
        assert "ana: 📎 [bold]plan.txt  1.2 MB · text/plain" in log

        # Ctrl+G: the chat's files, newest first; Save as… to a path Ben types.
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: isinstance(app.screen, FilesDialog))
        files = app.screen
        await settle(pilot, lambda: not files.query_one("#save-as", Button).disabled)
        assert files.current().name == "[bold]plan.txt"
        files.query_one("#show-folder", Button).press()
        await settle(pilot, lambda: "Kept on this device at" in text_of(app, "#files-status"))
        kept = Path(files.current().path)
        assert kept.is_relative_to(tmp_path / "ben")  # under Ben's profile
        files.query_one("#save-as", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, SaveAsDialog))
        target = tmp_path / "ben-downloads" / "plan.txt"
        target.parent.mkdir()
        app.screen.query_one("#save-path", Input).value = str(target)
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen is files)
        assert target.read_bytes() == second.read_bytes()
        assert "Saved a copy at" in text_of(app, "#files-status")

        # Saving the first file over it asks first; Cancel leaves it as it was.
        files.query_one("#files").index = 1
        await settle(pilot, lambda: files.current().name == "trip notes.bin")
        files.query_one("#save-as", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, SaveAsDialog))
        save_as = app.screen
        save_as.query_one("#save-path", Input).value = str(target)
        save_as.query_one("#save", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        app.screen.query_one("#cancel", Button).press()
        await settle(pilot, lambda: app.screen is save_as)
        assert target.read_bytes() == second.read_bytes()
        # A folder means the file's own name in it.
        save_as.query_one("#save-path", Input).value = str(target.parent)
        save_as.query_one("#save", Button).press()
        await settle(pilot, lambda: app.screen is files)
        assert (target.parent / "trip notes.bin").read_bytes() == source.read_bytes()
        # Replace, confirmed.
        files.query_one("#save-as", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, SaveAsDialog))
        app.screen.query_one("#save-path", Input).value = str(target)
        app.screen.query_one("#save", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: app.screen is files)
        assert target.read_bytes() == source.read_bytes()

        # A click on a file's line opens the same list with that file chosen.
        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is main)
        first = next(i for i in main.query(MessageItem) if "trip notes" in str(i.render()))
        await pilot.click(first)
        await settle(pilot, lambda: isinstance(app.screen, FilesDialog))
        await settle(pilot, lambda: app.screen.current() is not None)
        assert app.screen.current().name == "trip notes.bin"


async def test_a_wrong_path_is_explained_and_nothing_is_sent(relay, tmp_path):
    _, ben = await connected_adults(tmp_path, relay)
    folder = tmp_path / "some-folder"
    folder.mkdir()
    app = app_of(tmp_path, "ana")
    async with open_client(ben) as b, app.run_test(size=SIZE) as pilot:
        main = await open_chat_with(app, pilot, "ben")
        await pilot.press("ctrl+t")
        await settle(pilot, lambda: isinstance(app.screen, AttachDialog))
        dialog = app.screen
        for value, reason in (
            ("", "Type the path of the file to send."),
            (str(tmp_path / "missing.pdf"), f"There is no file at {tmp_path / 'missing.pdf'}."),
            (str(folder), "is a folder"),
            ("~/surely-not-here-agechat.bin", f"There is no file at {Path.home()}"),  # ~ expanded
        ):
            dialog.query_one("#attach-path", Input).value = value
            await pilot.press("enter")
            await settle(pilot, lambda r=reason: r in text_of(app, "#attach-status"))
            assert reason in text_of(app, "#attach-status")
            assert app.screen is dialog
        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is main)
        assert "📎" not in log_text(app)
        assert [m for m in await main.session.messages("ben") if m.kind == "message"] == []
        assert not list((tmp_path / "ana").rglob("attachments/out/*"))
    assert [e for e in await drain(b, 0.3) if isinstance(e, MessageReceived)] == []


# --- without a relay: the line and the dialog's words -----------------------------------


def message_with(attachment: LocalAttachment, *, state: str, sender: str = "me", body: str = ""):
    t = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)
    return HistoryMessage(
        rowid=1,
        sender=sender,
        msg_id="m1",
        recipient="you" if sender == "me" else "me",
        conversation="dm:me:you",
        kind="message",
        mode="visible",
        body=body,
        direction="out" if sender == "me" else "in",
        state=state,
        error_code=None,
        created_at=t,
        sent_at=t,
        attachment=attachment,
    )


FILE = LocalAttachment(name="a.png", type="image/png", size=2048, sha256="00", path="/x/a.png")


def test_lines_say_uploading_and_what_became_of_a_file():
    def line(message) -> str:
        return render_message(message, "me").plain

    assert line(message_with(FILE, state="pending")) == (
        "16:00  you: 📎 a.png  2.0 kB · image/png  uploading…"
    )
    assert line(message_with(FILE, state="sent", body="look")).endswith(
        "you: look\n       📎 a.png  2.0 kB · image/png  sent ✓"
    )
    for state, words in (
        ("unavailable", "unavailable: no longer on the relay"),
        ("corrupt", "corrupt: damaged in transit, not saved"),
    ):
        gone = LocalAttachment(**{**FILE.to_json(), "state": state})
        assert line(message_with(gone, state="received", sender="you")).endswith(words)
    evil = LocalAttachment(**{**FILE.to_json(), "name": "[red]x\x1b[2J.png", "type": "[b]t/t"})
    rendered = render_message(message_with(evil, state="received", sender="you"), "me")
    assert "📎 [red]x\\x1b[2J.png  2.0 kB · [b]t/t" in rendered.plain
    assert [human_size(n) for n in (1, 999, 1_234, 1_234_567, 16 * 1024 * 1024)] == [
        "1 byte",
        "999 bytes",
        "1.2 kB",
        "1.2 MB",
        "16.8 MB",
    ]
    assert isinstance(rendered, Text)


class _NoPolicy:
    async def policy(self):
        return None


async def test_the_attach_dialog_says_a_visible_chat_s_file_is_matched():
    sent: list[tuple[Path, str]] = []

    async def send(path: Path, text: str):
        sent.append((path, text))

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(AttachDialog(_NoPolicy(), "kid", "visible", send))  # type: ignore[arg-type]

    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        mode = text_of(app, "#attach-mode")
        assert "👀 visible to safety checks" in mode
        assert "Visible to safety checks (matched against known-material lists)" in mode
        assert str(app.screen.query_one("#attach-send", Button).label) == "Send"
        await pilot.press("enter")
        assert "Type the path" in text_of(app, "#attach-status")
    assert sent == []
