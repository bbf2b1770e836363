"""The scrollable history of one conversation: a sliding window over the local store.

At most WINDOW lines are mounted. Opening a conversation mounts its newest page; scrolling
to the top mounts the page before and unmounts the newest lines beyond the window;
scrolling back down does the reverse. Every page therefore costs the same, however long
the conversation (10,000 messages or more), and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.containers import VerticalScroll

from client.history import HistoryMessage
from client.tui.widgets.message_item import MessageItem

PAGE = 50  # enough to fill a tall terminal; a smaller first page paints sooner
WINDOW = 6 * PAGE

#: (before_rowid, after_rowid) -> a page, oldest first
LoadPage = Callable[[int | None, int | None], Awaitable[list[HistoryMessage]]]


class MessageLog(VerticalScroll, can_focus=False):
    """Scrolls with the mouse and PageUp/PageDown from the input; never takes focus, so
    nothing typed is lost to it."""

    def __init__(self, me: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.me = me
        self._load: LoadPage | None = None
        self._older_exhausted = True
        self._at_newest = True  # the newest stored line is mounted (live lines append)
        self._loading = False
        self._adjusting = False
        self._items: dict[str, MessageItem] = {}

    def _mounted(self) -> list[MessageItem]:
        return [c for c in self.children if isinstance(c, MessageItem)]

    async def show(self, load: LoadPage) -> None:
        """Replace the content with the newest page of another conversation."""
        self._load = load
        self._items.clear()
        await self.remove_children()
        page = await load(None, None)
        self._older_exhausted = len(page) < PAGE
        self._at_newest = True
        await self.mount_all([self._item(m) for m in page])
        # Stay at the bottom (the newest line) as the layout settles and lines arrive,
        # until the reader scrolls away.
        self.anchor()
        self.scroll_end(animate=False)

    def _item(self, message: HistoryMessage, reason: str | None = None) -> MessageItem:
        item = MessageItem(message, self.me, reason)
        self._items[message.msg_id] = item
        return item

    async def _trim(self, *, keep_top: bool) -> None:
        """Unmount lines beyond the window from the end opposite to where we're reading."""
        mounted = self._mounted()
        excess = len(mounted) - WINDOW
        if excess <= 0:
            return
        doomed = mounted[-excess:] if keep_top else mounted[:excess]
        for item in doomed:
            self._items.pop(item.message.msg_id, None)
        await self.remove_children(doomed)
        if keep_top:
            self._at_newest = False
        else:
            self._older_exhausted = False

    def _keep_in_view(self, anchor: MessageItem, offset: float) -> None:
        """Scroll so ``anchor`` is where it was on screen: no jump when pages come and go."""
        self._adjusting = True  # our own scroll must not look like the reader reaching an end
        try:
            self.scroll_to(y=anchor.virtual_region.y - offset, animate=False, immediate=True)
        finally:
            self._adjusting = False

    async def load_older(self) -> bool:
        """Mount the page before the oldest shown; False when there is none."""
        mounted = self._mounted()
        if self._load is None or self._older_exhausted or self._loading or not mounted:
            return False
        self._loading = True
        try:
            anchor = mounted[0]
            offset = anchor.virtual_region.y - self.scroll_y
            page = await self._load(anchor.message.rowid, None)
            self._older_exhausted = len(page) < PAGE
            if page:
                await self.mount_all([self._item(m) for m in page], before=anchor)
                await self._trim(keep_top=True)
                self.call_after_refresh(self._keep_in_view, anchor, offset)
            return bool(page)
        finally:
            self._loading = False

    async def load_newer(self) -> bool:
        """Mount the page after the newest shown (after scrolling back down)."""
        mounted = self._mounted()
        if self._load is None or self._at_newest or self._loading or not mounted:
            return False
        self._loading = True
        try:
            anchor = mounted[-1]
            offset = anchor.virtual_region.y - self.scroll_y
            page = await self._load(None, anchor.message.rowid)
            self._at_newest = len(page) < PAGE
            if page:
                await self.mount_all([self._item(m) for m in page])
                await self._trim(keep_top=False)
                self.call_after_refresh(self._keep_in_view, anchor, offset)
            return bool(page)
        finally:
            self._loading = False

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._adjusting or self._loading:
            return
        if new <= 0 and old > 0 and not self._older_exhausted:
            self.run_worker(self.load_older(), exclusive=True, group="paging")
        elif new >= self.max_scroll_y and old < new and not self._at_newest:
            self.run_worker(self.load_newer(), exclusive=True, group="paging")

    async def add(self, message: HistoryMessage, reason: str | None = None) -> None:
        if message.msg_id in self._items:
            self._items[message.msg_id].update_message(message, reason)
            return
        if not self._at_newest:
            return  # reading older history: it is mounted when they scroll back down
        at_end = self.is_vertical_scroll_end or self.max_scroll_y == 0
        await self.mount(self._item(message, reason))
        await self._trim(keep_top=False)
        if at_end:
            self.scroll_end(animate=False)

    def update(self, message: HistoryMessage, reason: str | None = None) -> None:
        item = self._items.get(message.msg_id)
        if item is not None:
            item.update_message(message, reason)

    @property
    def count(self) -> int:
        return len(self._items)

    @property
    def reached_oldest(self) -> bool:
        return self._older_exhausted
