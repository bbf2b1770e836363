"""The client's side of the relay, one module per thing it owns.

- ``api``: ``RelayClient``, what callers use: lifecycle, sending, and the requests
  (contacts, search, blocks, reports, declarations, bundles, prekeys, safety numbers);
  it composes the parts below and routes the relay's frames to them.
- ``connection``: the WebSocket, login, reconnects, and request/answer matching.
- ``outbox``: outgoing messages until the relay has stored them, and who waits for them.
- ``e2ee_path``: what a message becomes as it leaves and arrives (mode, encryption,
  decryption, storing and announcing), and keeping our prekeys and declaration published.
"""

from client.relay.api import RelayClient
from client.relay.connection import websocket_url
from client.relay.outbox import new_message_id

__all__ = ["RelayClient", "new_message_id", "websocket_url"]
