"""Files in a chat: sending one (a path prompt), and the chat's files, to save a copy or see
where one is kept. Everything goes through the client library (ChatSession and its
RelayClient): the file is copied under the profile, uploaded, and encrypted on this device
in an `e2ee` chat. Files are never shown inline, whatever their type.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from client.attachments import CHUNK, LocalAttachment, sha256_of
from client.cli import printable
from client.errors import ClientError
from client.explain import MODE_BADGE
from client.history import HistoryMessage
from client.session import ChatSession
from client.tui.screens.dialogs import ConfirmDialog, Dialog
from client.tui.widgets.message_item import ATTACHMENT_STATE, attachment_text, human_size

#: What sending a file does in each mode: the attach dialog says it before anything leaves.
MODE_EFFECT = {
    "e2ee": "Encrypted on this device before upload: only you and they can open it.",
    "visible": "Visible to safety checks (matched against known-material lists): the relay "
    "can see this file, as it can see this chat.",
}
SEND_LABEL = {"e2ee": "Encrypt and send", "visible": "Send"}

SendFile = Callable[[Path, str], Awaitable[HistoryMessage]]


def check_file(value: str, max_bytes: int | None = None) -> Path | str:
    """The file a typed path names (``~`` expanded, quotes around it dropped), or why it
    can't be sent."""
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]  # as a file manager pastes it
    if not value:
        return "Type the path of the file to send."
    path = Path(value).expanduser()
    try:
        if not path.exists():
            return f"There is no file at {path}."
        if path.is_dir():
            return f"{path} is a folder: type the path of a file in it."
        if not path.is_file():
            return f"{path} is not a regular file."
        if not os.access(path, os.R_OK):
            return f"{path} can't be read (permission denied)."
        size = path.stat().st_size
    except OSError as exc:
        return f"{path} can't be read ({exc.strerror or exc})."
    if max_bytes is not None and size > max_bytes:
        return (
            f"{path.name} is {human_size(size)}: larger than this relay allows "
            f"({human_size(max_bytes)} per file)."
        )
    return path


class AttachDialog(Dialog):
    """A path prompt and an optional message; says what sending does in this chat's mode.

    ``send`` is called with the checked path and the text; dismissed with ``"sent"``.
    Nothing is sent while the path is wrong: the reason is shown under the fields.
    """

    def __init__(self, session: ChatSession, handle: str, mode: str, send: SendFile) -> None:
        super().__init__()
        self.session, self.handle, self.mode, self.send = session, handle, mode, send
        self.max_bytes: int | None = None
        self._sending = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="attach-dialog"):
            yield Label(f"Send a file to @{self.handle}", classes="dialog-title")
            mode = Text(MODE_BADGE.get(self.mode, self.mode) + "\n", style="bold")
            mode.append(MODE_EFFECT.get(self.mode, MODE_EFFECT["visible"]), style="not bold")
            yield Static(mode, id="attach-mode", classes=f"mode-{self.mode}")
            yield Label("File")
            yield Input(
                placeholder="path to the file, e.g. ~/Documents/notes.pdf", id="attach-path"
            )
            yield Label("Message (optional)")
            yield Input(placeholder="a few words to go with it", id="attach-text")
            yield Static("", id="attach-status")
            with Horizontal(classes="buttons"):
                yield Button(SEND_LABEL.get(self.mode, "Send"), id="attach-send", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#attach-path", Input).focus()
        self._load_limit()

    @work
    async def _load_limit(self) -> None:
        policy = await self.session.policy()
        if policy is not None:
            self.max_bytes = policy.limits.attachment_max_bytes

    def _status(self, text: str) -> None:
        self.query_one("#attach-status", Static).update(Text(text))

    @on(Input.Changed, "#attach-path")
    def _path_changed(self) -> None:
        self._status("")

    @on(Button.Pressed, "#attach-send")
    @on(Input.Submitted, "#attach-path")
    @on(Input.Submitted, "#attach-text")
    @work(group="send")  # not exclusive: a second Enter must not cancel a send under way
    async def _send(self) -> None:
        if self._sending:
            return
        path_input = self.query_one("#attach-path", Input)
        checked = check_file(path_input.value, self.max_bytes)
        if isinstance(checked, str):
            self._status(checked)
            path_input.focus()
            return
        text = self.query_one("#attach-text", Input).value.strip()
        self._sending = True
        self.query_one("#attach-send", Button).disabled = True
        try:
            await self.send(checked, text)
        except ClientError as exc:
            self._status(f"{exc.message} [{exc.code}]")
            return
        finally:
            self._sending = False
            self.query_one("#attach-send", Button).disabled = False
        self.dismiss("sent")

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


# --- the chat's files -------------------------------------------------------------------

SCAN_PAGE = 200
MAX_LISTED = 100


async def files_in(
    session: ChatSession, handle: str, limit: int = MAX_LISTED
) -> list[HistoryMessage]:
    """The newest ``limit`` messages with a file in the chat with ``handle``, newest first."""
    found: list[HistoryMessage] = []
    before: int | None = None
    while len(found) < limit:
        page = await session.messages(handle, limit=SCAN_PAGE, before_rowid=before)
        found.extend(m for m in reversed(page) if m.attachment is not None)
        if len(page) < SCAN_PAGE:
            break
        before = page[0].rowid
    return found[:limit]


def _file_label(message: HistoryMessage, me: str) -> Text:
    assert message.attachment is not None
    who = "you" if message.sender == me else message.sender
    when = (message.sent_at or message.created_at).strftime("%Y-%m-%d %H:%M")
    line = attachment_text(message.attachment)
    line.append(f"\n   from {printable(who)}, {when}", style="dim")
    return line


class FileItem(ListItem):
    def __init__(self, message: HistoryMessage, me: str) -> None:
        super().__init__(Static(_file_label(message, me)))
        self.message = message


class FilesDialog(Dialog):
    """The chat's files, newest first: save a copy elsewhere, or see where it is kept."""

    def __init__(
        self, session: ChatSession, handle: str, selected: HistoryMessage | None = None
    ) -> None:
        super().__init__()
        self.session, self.handle, self.selected = session, handle, selected

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="files-dialog"):
            yield Label(f"Files in your chat with @{self.handle}", classes="dialog-title")
            yield ListView(id="files")
            yield Static(Text("Loading…"), id="files-status")
            with Horizontal(classes="buttons"):
                yield Button("Save as…", id="save-as", variant="primary", disabled=True)
                yield Button("Show folder", id="show-folder", disabled=True)
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self._load()

    @work(exclusive=True)
    async def _load(self) -> None:
        messages = await files_in(self.session, self.handle)
        chosen = self.selected
        if chosen is not None and all(m.msg_id != chosen.msg_id for m in messages):
            messages.insert(0, chosen)  # older than the newest files listed
        files = self.query_one("#files", ListView)
        await files.clear()
        await files.extend(FileItem(m, self.session.handle) for m in messages)
        if not messages:
            self._status("No files in this chat yet. Ctrl+T sends one.")
            self.query_one("#close", Button).focus()
            return
        index = next((i for i, m in enumerate(messages) if chosen and m.msg_id == chosen.msg_id), 0)
        files.index = index
        files.focus()
        self._show_state()

    def _status(self, text: str | Text) -> None:
        self.query_one("#files-status", Static).update(
            Text(text) if isinstance(text, str) else text
        )

    def current(self) -> LocalAttachment | None:
        item = self.query_one("#files", ListView).highlighted_child
        return item.message.attachment if isinstance(item, FileItem) else None

    @on(ListView.Highlighted, "#files")
    def _show_state(self) -> None:
        attachment = self.current()
        ready = attachment is not None and attachment.state == "ready"
        self.query_one("#save-as", Button).disabled = not ready
        self.query_one("#show-folder", Button).disabled = not ready
        if attachment is None:
            return
        if not ready:
            self._status(f"This file is {ATTACHMENT_STATE[attachment.state]}.")
        else:
            self._status("Save as… copies it where you choose. Files are never opened here.")

    @on(Button.Pressed, "#save-as")
    @on(ListView.Selected, "#files")
    def _save_as(self) -> None:
        attachment = self.current()
        if attachment is None or attachment.state != "ready":
            return

        def saved(target: str | None) -> None:
            if target:
                self._status(Text(f"Saved a copy at {target}", style="green"))
                self.app.notify(f"Saved a copy at {target}", title="Saved")

        self.app.push_screen(SaveAsDialog(attachment), saved)

    @on(Button.Pressed, "#show-folder")
    def _show_folder(self) -> None:
        attachment = self.current()
        if attachment is None or attachment.state != "ready":
            return
        path = Path(attachment.path)
        # Shown, not opened: nothing here starts another program.
        self._status(Text(f"Kept on this device at\n{printable(str(path))}"))
        self.app.notify(printable(str(path.parent)), title="Folder", timeout=10)

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)


# --- saving a copy ----------------------------------------------------------------------


def default_target(attachment: LocalAttachment) -> str:
    downloads = Path.home() / "Downloads"
    folder = "~/Downloads" if downloads.is_dir() else "~"
    return f"{folder}/{attachment.name}"


def save_copy(attachment: LocalAttachment, target: Path, *, overwrite: bool) -> None:
    """Copy the saved file to ``target``, after checking it is still the file that arrived.

    Raises FileExistsError when ``target`` exists and ``overwrite`` is false (checked as the
    file is created, so nothing is replaced without asking), ValueError when the saved copy
    no longer matches its digest, OSError otherwise. A replaced file is swapped in whole,
    once the copy is complete: a failure leaves it as it was.
    """
    source = Path(attachment.path)
    if sha256_of(source) != attachment.sha256:
        raise ValueError("The copy on this device no longer matches what was sent.")
    with source.open("rb") as src:
        if not overwrite:
            with target.open("xb") as dst:  # FileExistsError: nothing was touched
                try:
                    shutil.copyfileobj(src, dst, CHUNK)
                except BaseException:
                    target.unlink(missing_ok=True)  # ours: created by the open above
                    raise
            return
        fd, partial = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
        try:
            with os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


class SaveAsDialog(Dialog):
    """A path to copy the file to (``~`` expanded; a folder means the file's name in it).

    Replacing an existing file asks first. Dismissed with the path written.
    """

    def __init__(self, attachment: LocalAttachment) -> None:
        super().__init__()
        self.attachment = attachment
        self._writing = False

    def compose(self) -> ComposeResult:
        name = printable(self.attachment.name)
        with Vertical(classes="dialog", id="save-dialog"):
            yield Label(Text(f"Save a copy of {name}"), classes="dialog-title")
            yield Static(
                Text(
                    f"{human_size(self.attachment.size)} · {printable(self.attachment.type)}",
                    style="dim",
                )
            )
            yield Label("Save to")
            yield Input(default_target(self.attachment), id="save-path")
            yield Static("", id="save-status")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#save-path", Input).focus()

    def _status(self, text: str) -> None:
        self.query_one("#save-status", Static).update(Text(text))

    def _target(self) -> Path | None:
        value = self.query_one("#save-path", Input).value.strip()
        if not value:
            self._status("Type where to save the file.")
            return None
        target = Path(value).expanduser()
        if target.is_dir():
            target = target / self.attachment.name
        if not target.parent.is_dir():
            self._status(f"There is no folder {target.parent}.")
            return None
        if target.is_dir():
            self._status(f"{target} is a folder.")
            return None
        if target.exists() and target.resolve() == Path(self.attachment.path).resolve():
            self._status("That is the file itself: choose another place.")
            return None
        return target

    @on(Button.Pressed, "#save")
    @on(Input.Submitted, "#save-path")
    def _save(self) -> None:
        if self._writing:
            return
        target = self._target()
        if target is None:
            return
        if target.exists():
            self.app.push_screen(
                ConfirmDialog(
                    f"Replace {target.name}?",
                    f"{target} already exists. Saving replaces what is there.",
                    "Replace",
                ),
                lambda answer: self._write(target, True) if answer else None,
            )
            return
        self._write(target, False)

    @work  # not exclusive: a copy under way is never cancelled half-written
    async def _write(self, target: Path, overwrite: bool) -> None:
        if self._writing:
            return
        self._writing = True
        try:
            await asyncio.to_thread(save_copy, self.attachment, target, overwrite=overwrite)
        except FileExistsError:
            self._status(f"{target} appeared meanwhile: press Save again to replace it.")
            return
        except ValueError as exc:
            self._status(str(exc))
            return
        except OSError as exc:
            self._status(f"Couldn't save to {target} ({exc.strerror or exc}).")
            return
        finally:
            self._writing = False
        self.dismiss(str(target))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
