"""The sandbox's web chat: play patients and clinicians in a browser instead of with curl.

``add_web_chat`` registers the page (``/``), its static files (``/web/``) and the few read-only endpoints the
page needs beside the control API of skinsense/sandbox/control.py (which the page uses to send):

- ``GET /sandbox/web/config``: the clinician chat ids and user ids (SKINSENSE_CLINICIAN_CHAT_IDS,
  SKINSENSE_CLINICIAN_USER_IDS: who may press buttons in a group chat) and the bot's name.
- ``GET /sandbox/web/chats/{chat_id}?version=V&wait=S``: the chat's messages, the bot's chat action
  ("upload_photo"...) while shown, its latest answers to button taps (shown as toasts), and a summary of every
  chat; answered at once when their version differs from ``V``, else when they change (long polling, up to ``S``
  seconds); the page sends back the version it got.
- ``GET /sandbox/files/{file_id}``: a file the patient or the bot sent (photos shown in the page).

Plain HTML, CSS and JavaScript in ``static/``: no build step, nothing from a CDN, works offline.
"""

from skinsense.sandbox.webchat.routes import STATIC_DIR, WebChat, add_web_chat

__all__ = ["STATIC_DIR", "WebChat", "add_web_chat"]
