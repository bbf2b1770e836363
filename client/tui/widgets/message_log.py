"""The scrollable history of one conversation, paged from the local store.

Only the newest page is mounted when a conversation opens; scrolling to the top loads the
page before it. A 10,000-message conversation therefore opens as fast as a short one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.containers import VerticalScroll

from client.history import HistoryMessage
from client.tui.widgets.message_item import MessageItem

PAGE = 100

LoadPage = Callable[[int | None], Awaitable[list[HistoryMessage]]]


class MessageLog(VerticalScroll, can_focus=False):
    """Scrolls with the mouse and PageUp/PageDown from the input; never takes focus, so
    nothing typed is lost to it."""

    def __init__(self, me: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.me = me
        self._load: LoadPage | None = None
        self._oldest: int | None = None
        self._exhausted = False
        self._loading = False
        self._items: dict[str, MessageItem] = {}

    async def show(self, load: LoadPage) -> None:
        """Replace the content with the newest page of another conversation."""
        self._load = load
        self._oldest = None
        self._exhausted = False
        self._items.clear()
        await self.remove_children()
        page = await load(None)
        await self._mount_page(page, prepend=False)
        self.scroll_end(animate=False)

    async def _mount_page(self, page: list[HistoryMessage], prepend: bool) -> None:
        if not page:
            self._exhausted = True
            return
        self._oldest = page[0].rowid
        self._exhausted = len(page) < PAGE
        items = [self._item(m) for m in page]
        if prepend and self.children:
            await self.mount_all(items, before=self.children[0])
        else:
            await self.mount_all(items)

    def _item(self, message: HistoryMessage, reason: str | None = None) -> MessageItem:
        item = MessageItem(message, self.me, reason)
        self._items[message.msg_id] = item
        return item

    async def load_older(self) -> bool:
        """Mount the page before the oldest shown; False when there is none."""
        if self._load is None or self._exhausted or self._loading:
            return False
        self._loading = True
        try:
            before = self.max_scroll_y
            await self._mount_page(await self._load(self._oldest), prepend=True)
            self.call_after_refresh(
                lambda: self.scroll_to(y=self.max_scroll_y - before, animate=False)
            )
            return True
        finally:
            self._loading = False

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= 0 and old > 0:
            self.run_worker(self.load_older(), exclusive=True, group="paging")

    async def add(self, message: HistoryMessage, reason: str | None = None) -> None:
        if message.msg_id in self._items:
            self._items[message.msg_id].update_message(message, reason)
            return
        at_end = self.is_vertical_scroll_end or self.max_scroll_y == 0
        await self.mount(self._item(message, reason))
        if at_end:
            self.scroll_end(animate=False)

    def update(self, message: HistoryMessage, reason: str | None = None) -> None:
        item = self._items.get(message.msg_id)
        if item is not None:
            item.update_message(message, reason)

    @property
    def count(self) -> int:
        return len(self._items)
